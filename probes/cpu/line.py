"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): line size.

Two probes whose raw curves memprobe/infer/line.py reads; the line size is measured, never
taken from sysfs.

StrideProbe: the stride sweep DESIGN.md asks for -- random blocks, two dependent loads per block
`stride_bytes` apart; below the line the second load hits the line the first brought. On CPUs
with adjacent-line or region prefetchers (Zen 3, most Intel cores) the second load is prefetched
too, so this curve often stays flat past the line; it is kept as raw data.

FalseSharingProbe: two threads do atomic adds on two words `stride_bytes` apart. While both
words share a line the line ping-pongs between the cores (slow); once they are a line apart each
core keeps its own (fast). Prefetchers cannot fake this: it is the coherence granule, i.e. the
line size, measured. Needs two cores.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit, prange

from memprobe.probes.cpu.buffers import Buffer, alloc
from memprobe.probes.cpu.chase import ChaseProbe, fill_pairs, sattolo_cycle
from memprobe.probes.cpu.intrinsics import atomic_add_u64, load_u64
from memprobe.probes.protocol import check

STRIDES_BYTES = (8, 16, 32, 64, 128, 256, 512)


class StrideProbe:
    name = "stride"
    backend = "cpu"
    block_bytes = 1024  # > largest stride; small so the touched lines overflow the caches

    def __init__(self, size_bytes: int = 256 << 20, seed: int = 777):
        self.size_bytes = size_bytes
        self.seed = seed
        self.buffer: Buffer | None = None
        self.n_blocks = 0

    def setup(self, stride_bytes: int) -> None:
        """Lay out the pairs `stride_bytes` apart in each block (the buffer is kept between strides)."""
        if self.buffer is None:
            self.buffer = alloc(self.size_bytes, np.uint64, "huge")
        self.n_blocks = self.size_bytes // self.block_bytes
        order = sattolo_cycle(self.n_blocks, self.seed)
        self.base = np.uint64(self.buffer.array.ctypes.data)
        fill_pairs(self.buffer.array, self.base, order, np.uint64(self.block_bytes // 8), np.uint64(stride_bytes // 8))

    def run(self, stride_bytes: int, repetitions: int, target_ns: float = 4e6) -> list[float]:
        """ns per hop (half a block) for one stride, one value per repetition."""
        self.setup(stride_bytes)
        probe = _Borrowed(self.buffer, self.n_blocks * 2)
        return probe.run(repetitions, target_ns=target_ns)

    def verify(self) -> bool:
        """The hops of one lap (two per block) stay in the buffer and close only at the end."""
        assert self.buffer is not None, "setup() first"
        return check(bool(lap_closes(self.base, self.n_blocks * 2, np.uint64(self.size_bytes))),
                     "the stride chain is not one lap through every block")

    def close(self) -> None:
        if self.buffer is not None:
            self.buffer.close()
            self.buffer = None


class _Borrowed(ChaseProbe):
    """A chase over a buffer someone else laid out."""

    def __init__(self, buffer: Buffer, n_hops_lap: int):
        super().__init__()
        self.buffer = buffer
        self.n_slots = n_hops_lap

    def close(self) -> None:  # the owner closes it
        self.buffer = None


@njit(cache=True)
def lap_closes(base_addr, hops, span_bytes):
    """Following `hops` pointers from the base stays inside the span and first returns at the end."""
    p = base_addr
    for i in range(hops):
        if p < base_addr or p >= base_addr + span_bytes or (i > 0 and p == base_addr):
            return False
        p = load_u64(p)
    return p == base_addr


@njit(parallel=True, cache=True)
def contend(base_addr, offsets_bytes, iters):
    """Each thread t hammers base+offsets[t] with relaxed atomic adds."""
    out = np.zeros(offsets_bytes.shape[0], np.uint64)
    for t in prange(offsets_bytes.shape[0]):
        addr = base_addr + offsets_bytes[t]
        s = np.uint64(0)
        for _ in range(iters):
            s += atomic_add_u64(addr, np.uint64(1))
        out[t] = s
    return out


class FalseSharingProbe:
    name = "false_sharing"
    backend = "cpu"

    def __init__(self, iters: int = 1_000_000):
        self.iters = iters
        self.buffer: Buffer | None = None
        self.adds: dict[int, int] = {}

    def setup(self) -> None:
        # start on a 4 KiB boundary so offsets below any plausible line share one line
        self.buffer = alloc(1 << 16, np.uint64, "4k")
        self.buffer.array[:] = 0
        self.base = np.uint64(self.buffer.array.ctypes.data)
        self.adds = {}

    @staticmethod
    def available() -> bool:
        import numba

        return numba.get_num_threads() >= 2

    def run(self, stride_bytes: int, repetitions: int) -> list[float]:
        """ns per atomic add (per thread) with the two words `stride_bytes` apart."""
        if self.buffer is None:
            self.setup()
        offs = np.array([0, stride_bytes], dtype=np.uint64)
        contend(self.base, offs, 1000)  # JIT + thread pool start
        out = []
        for _ in range(repetitions):
            t0 = time.perf_counter_ns()
            contend(self.base, offs, self.iters)
            out.append((time.perf_counter_ns() - t0) / self.iters)
        n = 1000 + repetitions * self.iters
        for off in (0, stride_bytes):
            self.adds[off // 8] = self.adds.get(off // 8, 0) + n
        return out

    def verify(self) -> bool:
        """Every atomic add landed: each counter holds exactly the adds made to it."""
        assert self.buffer is not None, "setup() first"
        got = {k: int(self.buffer.array[k]) for k in self.adds}
        return check(got == self.adds, f"atomic adds lost: counters {got}, adds made {self.adds}")

    def close(self) -> None:
        if self.buffer is not None:
            self.buffer.close()
            self.buffer = None
