"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): GPU compute
ceilings.

* FP32 FMA: every thread runs FMA_CHAINS independent `cuda.fma` chains (enough independent
  work to cover the FMA latency with full occupancy); FLOPs = 2 x chains x iterations x threads.
  Thread 0 of each block also reads %clock64 and %globaltimer around its loop, so the SM clock
  *during* the FMA load is measured (clocks drop under load; the peak formula needs this one).
* Tensor-core GEMM ceilings through CuPy or PyTorch when installed, each sample labelled with
  the library and dtype that produced it. Seconds only; scan/gpu.py turns them into FLOP/s.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np
from numba import cuda, float32

from memprobe.probes.gpu.clock import clock64, globaltimer_ns, time_launches
from memprobe.probes.protocol import check

FMA_CHAINS = 8
FMA_B = 0.999999
FMA_C = 1e-6  # x -> x*b + c converges to 1: no overflow, no denormals


@cuda.jit
def fma_kernel(out, iters, out_cycles, out_ns):
    t = cuda.threadIdx.x
    b = float32(FMA_B)
    c = float32(FMA_C)
    x0 = float32(t & 7) * float32(0.001)
    x1 = x0 + float32(0.1)
    x2 = x0 + float32(0.2)
    x3 = x0 + float32(0.3)
    x4 = x0 + float32(0.4)
    x5 = x0 + float32(0.5)
    x6 = x0 + float32(0.6)
    x7 = x0 + float32(0.7)
    c0 = clock64()  # every thread reads (cheap, once); thread 0 reports
    g0 = globaltimer_ns()
    for _ in range(iters):
        x0 = cuda.fma(x0, b, c)
        x1 = cuda.fma(x1, b, c)
        x2 = cuda.fma(x2, b, c)
        x3 = cuda.fma(x3, b, c)
        x4 = cuda.fma(x4, b, c)
        x5 = cuda.fma(x5, b, c)
        x6 = cuda.fma(x6, b, c)
        x7 = cuda.fma(x7, b, c)
    out[cuda.grid(1)] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7
    if t == 0:
        g1 = globaltimer_ns()
        c1 = clock64()
        out_cycles[cuda.blockIdx.x] = c1 - c0
        out_ns[cuda.blockIdx.x] = g1 - g0


class FmaProbe:
    """run() returns seconds per launch; flops(iters) what one launch computed; clock()
    the per-block (cycles, ns) of the last launch."""

    name = "fp32_fma"
    backend = "cuda"

    def __init__(self, blocks: int, threads: int) -> None:
        self.blocks, self.threads = blocks, threads
        self.out = self.cyc = self.ns = None

    def setup(self) -> None:
        self.out = cuda.device_array(self.blocks * self.threads, dtype=np.float32)
        self.cyc = cuda.device_array(self.blocks, dtype=np.uint64)
        self.ns = cuda.device_array(self.blocks, dtype=np.uint64)

    def close(self) -> None:
        self.out = self.cyc = self.ns = None  # numba frees device memory with the last reference

    def _launch(self, iters: int) -> None:
        fma_kernel[self.blocks, self.threads](self.out, iters, self.cyc, self.ns)

    def run(self, iters: int, repetitions: int) -> list[float]:
        return time_launches(lambda: self._launch(iters), repetitions)

    def flops(self, iters: int) -> int:
        return 2 * FMA_CHAINS * iters * self.blocks * self.threads

    def clock(self) -> tuple[np.ndarray, np.ndarray]:
        return self.cyc.copy_to_host(), self.ns.copy_to_host()

    def verify(self, iters: int = 3) -> bool:
        self._launch(iters)
        got = self.out.copy_to_host()
        t = np.arange(self.blocks * self.threads) % self.threads
        x0 = (t & 7).astype(np.float32) * np.float32(0.001)
        xs = [x0 + np.float32(0.1 * k) for k in range(FMA_CHAINS)]
        for _ in range(iters):
            xs = [x * np.float32(FMA_B) + np.float32(FMA_C) for x in xs]
        return check(bool(np.allclose(got, sum(xs), rtol=1e-5)), "the GPU FMA kernel gave wrong values")


# ---- tensor-core GEMM through a library ------------------------------------------------------
def gemm_libraries() -> list[str]:
    """Libraries importable here that can run a GEMM on the GPU (checked without importing)."""
    return [m for m in ("cupy", "torch") if importlib.util.find_spec(m) is not None]


def _time_cupy(dtype: str, n: int, reps: int) -> list[float]:
    import cupy as cp

    a = cp.ones((n, n), dtype=dtype)
    b = cp.ones((n, n), dtype=dtype)
    cp.matmul(a, b)  # warm-up (cuBLAS handle, heuristics)
    cp.cuda.Device().synchronize()
    out = []
    for _ in range(reps):
        e0, e1 = cp.cuda.Event(), cp.cuda.Event()
        e0.record()
        cp.matmul(a, b)
        e1.record()
        e1.synchronize()
        out.append(cp.cuda.get_elapsed_time(e0, e1) / 1e3)
    return out


def _time_torch(dtype: str, n: int, reps: int) -> list[float]:
    import torch

    tf32 = dtype == "tf32"
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        tdt = {"bfloat16": torch.bfloat16, "float16": torch.float16,
               "float32": torch.float32, "tf32": torch.float32}[dtype]
        a = torch.ones((n, n), dtype=tdt, device="cuda")
        b = torch.ones((n, n), dtype=tdt, device="cuda")
        torch.matmul(a, b)
        torch.cuda.synchronize()
        out = []
        for _ in range(reps):
            e0 = torch.cuda.Event(enable_timing=True)
            e1 = torch.cuda.Event(enable_timing=True)
            e0.record()
            torch.matmul(a, b)
            e1.record()
            e1.synchronize()
            out.append(e0.elapsed_time(e1) / 1e3)
        return out
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


# (library, dtype as the library names it): CuPy has no bfloat16 array type; its float32
# matmul is plain FP32 unless CUPY_TF32=1 was set before import, so it is labelled "float32".
GEMM_CASES: tuple[tuple[str, str], ...] = (
    ("torch", "bfloat16"), ("torch", "float16"), ("torch", "tf32"), ("torch", "float32"),
    ("cupy", "float16"), ("cupy", "float32"),
)


def gemm_samples(n: int, repetitions: int, libraries: list[str] | None = None) -> list[dict[str, Any]]:
    """Seconds per n x n x n GEMM for every case whose library is importable. A case that
    fails is returned with its error instead of samples (the scan keeps going)."""
    libs = gemm_libraries() if libraries is None else libraries
    out: list[dict[str, Any]] = []
    for lib, dtype in GEMM_CASES:
        if lib not in libs:
            continue
        rec: dict[str, Any] = {"library": lib, "dtype": dtype, "m": n, "n": n, "k": n,
                               "flops": 2 * n ** 3}
        t0 = time.perf_counter()
        try:
            rec["seconds"] = (_time_cupy if lib == "cupy" else _time_torch)(dtype, n, repetitions)
        except Exception as exc:  # a library without this dtype, or out of memory
            rec["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        rec["wall_s"] = round(time.perf_counter() - t0, 3)
        out.append(rec)
    return out
