"""Stage 1 of the flow (probe): CPU probes (Numba): pointer chase, clock chain, line-size,
bandwidth, FMA and loaded-latency kernels. They return raw timings and decide nothing."""
