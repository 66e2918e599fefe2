"""Stage 1 of the flow (probe): GPU probes (numba.cuda), imported only when a GPU scan is asked
for. They return raw timings and decide nothing."""
