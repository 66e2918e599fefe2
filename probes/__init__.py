"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report).

Measurement kernels only: Numba `@njit` for the CPU (`cpu/`), `numba.cuda` for the GPU (`gpu/`).
A probe takes sizes and repetitions and returns raw timings; it decides nothing. Installed as
`memprobe.probes`.
"""
