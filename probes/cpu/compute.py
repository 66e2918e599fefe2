"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): compute ceilings.

FmaProbe: FMA throughput from independent accumulator chains. Each chain is `x = x*m + a`
(m < 1, so it converges to a/(1-m) and never overflows or goes denormal). The chain count is
fixed per dtype at 14 vector registers' worth (56 float64 / 112 float32 lanes at 256 bits): that
covers FMA latency x pipes (4 x 2 on Zen 3, 4 x 2 on Intel cores) with room to spare, and it
leaves two registers for m and a. With a compile-time lane count LLVM keeps the accumulator
array in registers and emits one packed `vfmadd...ps/pd ymm` per vector (tests check the asm;
8-12 vectors for float64 made LLVM spill on this LLVM, 14 did not).

GemmProbe: the practical ceiling, a dense matrix product through NumPy's BLAS (all threads of the
BLAS library's pool), labelled with the library name from numpy's build config.

Both return raw ns; FLOP counts are attributes; `gflops` turns them into GFLOP/s in one place.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from numba import njit

from memprobe.probes.protocol import ProbeError

FMA_LANES = {"float64": 56, "float32": 112}
FMA_M = 0.999
FMA_A = 0.001


@njit(cache=True, nogil=True, fastmath=True)
def fma_chains_f64(n, x, m, a):
    acc = np.empty(56, np.float64)
    for j in range(56):
        acc[j] = x[j]
    for _ in range(n):
        for j in range(56):
            acc[j] = acc[j] * m + a
    return acc


@njit(cache=True, nogil=True, fastmath=True)
def fma_chains_f32(n, x, m, a):
    acc = np.empty(112, np.float32)
    for j in range(112):
        acc[j] = x[j]
    for _ in range(n):
        for j in range(112):
            acc[j] = acc[j] * m + a
    return acc


_KERNELS = {"float64": fma_chains_f64, "float32": fma_chains_f32}


def gflops(flops: float, ns: float) -> float:
    """The one place FLOP counts and ns become GFLOP/s."""
    return flops / ns if ns and ns > 0 else float("nan")


def fma_reference(x: np.ndarray, n: int, m: float, a: float) -> np.ndarray:
    """What `n` steps of every chain must give, computed plainly in float64."""
    r = x.astype(np.float64)
    for _ in range(n):
        r = r * m + a
    return r


class FmaError(ProbeError):
    """A compute kernel produced wrong values: its timings are not valid."""


class FmaProbe:
    """FMA throughput for one dtype. run(reps, threads) returns ns per repetition of
    `iterations` steps of every chain on every thread; flops_per_run gives the FLOP count."""

    name = "fma"
    backend = "cpu"

    def __init__(self, dtype: str = "float64"):
        if dtype not in _KERNELS:
            raise ValueError(f"dtype must be one of {tuple(_KERNELS)}")
        self.dtype = dtype
        self.lanes = FMA_LANES[dtype]
        self.iterations = 0
        self.threads = 1
        self._last: np.ndarray | None = None
        self._x: np.ndarray | None = None

    def setup(self, threads: int = 1) -> None:
        self.threads = max(1, int(threads))
        t = np.dtype(self.dtype).type
        base = 1.0 + np.arange(self.lanes) / self.lanes
        self._x = np.tile(base, (self.threads, 1)).astype(t)

    @property
    def flops_per_run(self) -> float:
        return 2.0 * self.lanes * self.iterations * self.threads

    def _call(self, n: int) -> float:
        kernel = _KERNELS[self.dtype]
        t = np.dtype(self.dtype).type
        m, a = t(FMA_M), t(FMA_A)
        x = self._x
        assert x is not None, "setup() first"
        if self.threads == 1:
            t0 = time.perf_counter_ns()
            r = kernel(n, x[0], m, a)[None, :]
            dt = float(time.perf_counter_ns() - t0)
        else:
            # one Python thread per core around the nogil kernel: no prange twin to compile
            # (a parallel variant costs seconds of JIT on a first run); the start and join
            # costs ~0.1 ms against a 5 ms run
            rows: list = [None] * self.threads
            go = threading.Barrier(self.threads + 1)

            def work(i: int) -> None:
                go.wait()
                rows[i] = kernel(n, x[i], m, a)

            ts = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(self.threads)]
            for th in ts:
                th.start()
            go.wait()
            t0 = time.perf_counter_ns()
            for th in ts:
                th.join()
            dt = float(time.perf_counter_ns() - t0)
            r = np.stack(rows)
        self._last = r
        return dt

    def run(self, repetitions: int, target_ns: float = 5e6) -> list[float]:
        """ns per repetition (each `iterations` steps on every thread at once)."""
        kernel = _KERNELS[self.dtype]
        assert self._x is not None, "setup() first"
        kernel(10, self._x[0], self._x.dtype.type(FMA_M), self._x.dtype.type(FMA_A))  # compile
        n = 1000
        while True:  # calibrate on one thread: thread start-up noise must not pick n
            t0 = time.perf_counter_ns()
            kernel(n, self._x[0], self._x.dtype.type(FMA_M), self._x.dtype.type(FMA_A))
            dt = time.perf_counter_ns() - t0
            if dt >= target_ns / 4 or n >= 1 << 34:
                break
            n *= 4
        self.iterations = max(1000, int(n * target_ns / max(dt, 1.0)))
        return [self._call(self.iterations) for _ in range(repetitions)]

    def verify(self, steps: int = 50) -> None:
        """Run `steps` steps and compare every chain with a plain float64 recurrence."""
        self._call(steps)
        assert self._x is not None and self._last is not None
        ref = fma_reference(self._x[0], steps, FMA_M, FMA_A)
        tol = 1e-4 if self.dtype == "float32" else 1e-12
        for row in self._last:
            if not np.allclose(row.astype(np.float64), ref, rtol=tol, atol=0):
                raise FmaError(f"FMA kernel ({self.dtype}, {self.threads} threads) gave wrong values")

    def close(self) -> None:
        self._x = self._last = None


def fma_asm(dtype: str = "float64") -> str:
    """The kernel's assembly, to check for packed vfmadd. Numba shows no assembly for code loaded
    from its cache, so this compiles an uncached twin with the same flags."""
    twin = njit(nogil=True, fastmath=True)(_KERNELS[dtype].py_func)
    t = np.dtype(dtype).type
    twin(1, np.ones(FMA_LANES[dtype], t), t(FMA_M), t(FMA_A))
    return twin.inspect_asm(twin.signatures[0])


def blas_library() -> str:
    """BLAS name and version from numpy's build config, e.g. 'scipy-openblas 0.3.31'."""
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        name = str(blas.get("name") or "blas")
        ver = blas.get("version")
        return f"{name} {ver}" if ver else name
    except Exception:  # numpy < 1.25 or an odd build: still label the figure
        return "numpy BLAS (unknown)"


class GemmProbe:
    """C = A @ B for square n x n matrices through NumPy (BLAS, its own thread pool)."""

    name = "gemm"
    backend = "cpu"

    def __init__(self, dtype: str = "float64", seed: int = 12345):
        self.dtype = dtype
        self.seed = seed
        self.n = 0
        self._a = self._b = self._c = None

    def setup(self, n: int) -> None:
        rng = np.random.default_rng(self.seed)
        self.n = int(n)
        self._a = rng.standard_normal((n, n)).astype(self.dtype)
        self._b = rng.standard_normal((n, n)).astype(self.dtype)
        self._c = np.empty((n, n), self.dtype)

    @property
    def flops_per_run(self) -> float:
        return 2.0 * self.n ** 3

    def run(self, repetitions: int) -> list[float]:
        np.matmul(self._a, self._b, out=self._c)  # warm-up: BLAS pool, pages
        out = []
        for _ in range(repetitions):
            t0 = time.perf_counter_ns()
            np.matmul(self._a, self._b, out=self._c)
            out.append(float(time.perf_counter_ns() - t0))
        return out

    def verify(self) -> None:
        """A few entries of C against dot products done separately in float64."""
        a, b, c = self._a, self._b, self._c
        assert a is not None and b is not None and c is not None
        rng = np.random.default_rng(self.seed + 1)
        idx = rng.integers(0, self.n, size=(8, 2))
        for i, j in idx:
            ref = float(np.dot(a[i].astype(np.float64), b[:, j].astype(np.float64)))
            tol = (1e-3 if self.dtype == "float32" else 1e-9) * np.sqrt(self.n) * 4
            if abs(float(c[i, j]) - ref) > tol * max(1.0, abs(ref)):
                raise FmaError(f"matmul ({self.dtype}, n={self.n}) gave a wrong entry")

    def close(self) -> None:
        self._a = self._b = self._c = None
