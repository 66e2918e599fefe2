"""CPU probes (Numba): pointer chase, clock chain, stride sweep, bandwidth and FMA kernels."""
