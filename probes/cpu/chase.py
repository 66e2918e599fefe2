"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): latency.

Dependent loads over one random cycle (the cache curves, and the page-local chase that checks a
level next to memory), and the core-clock chain that turns ns into cycles. Raw ns only.

The chase buffer holds addresses: slot k's first word holds the address of the next slot's
first word. The order is one Sattolo cycle, so every slot is visited once per lap and the
prefetchers see no pattern. The hop is a raw 64-bit load (no index arithmetic, no bounds or
wraparound checks), so the hot loop is one `mov` per hop, like the C chase in benchmarks/.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from memprobe.probes.cpu.buffers import Buffer, alloc
from memprobe.probes.cpu.intrinsics import load_u64
from memprobe.probes.protocol import check


@njit(cache=True)
def sattolo_cycle(n, seed):
    """A uniformly random cyclic permutation of 0..n-1 (one cycle through every slot)."""
    np.random.seed(seed)
    p = np.arange(n, dtype=np.uint64)
    for i in range(n - 1, 0, -1):
        j = np.random.randint(0, i)  # j < i: Sattolo, not Fisher-Yates
        t = p[i]
        p[i] = p[j]
        p[j] = t
    return p


@njit(cache=True)
def region_cycle(n, per_region, seed):
    """One cycle through slots 0..n-1 that visits each region of `per_region` consecutive slots
    whole, in random order inside it, before moving to the next region (regions in random
    order). Returned as successors, like sattolo_cycle. Why: over a memory-sized buffer it keeps
    the cache misses of a random chase (each line once a lap, no pattern inside a region) while
    a lap needs one translation per region instead of one per hop, so page walks drop out."""
    np.random.seed(seed)
    n_regions = (n + per_region - 1) // per_region
    regions = np.random.permutation(n_regions)
    order = np.empty(n, dtype=np.uint64)
    k = 0
    for r in regions:
        lo = r * per_region
        hi = min(n, lo + per_region)
        inner = np.random.permutation(hi - lo)
        for i in range(hi - lo):
            order[k] = lo + inner[i]
            k += 1
    succ = np.empty(n, dtype=np.uint64)
    for i in range(n - 1):
        succ[order[i]] = order[i + 1]
    succ[order[n - 1]] = order[0]
    return succ


@njit(cache=True)
def fill_cycle(buf, base_addr, succ, slot_words):
    """Write the chain: slot k's first word holds the address of slot succ[k]'s first word."""
    slot_bytes = slot_words * np.uint64(8)
    for k in range(succ.shape[0]):
        buf[np.uint64(k) * slot_words] = base_addr + succ[k] * slot_bytes


@njit(cache=True)
def fill_pairs(buf, base_addr, block_order, block_words, pair_words):
    """Stride layout: in each block a hop goes from word 0 to word `pair_words`, then to word 0
    of the next block in a random cycle."""
    n = block_order.shape[0]
    for k in range(n):
        base = np.uint64(k) * block_words
        buf[base] = base_addr + (base + pair_words) * np.uint64(8)
        buf[base + pair_words] = base_addr + block_order[k] * block_words * np.uint64(8)


@njit(cache=True, nogil=True)
def chase(start_addr, hops):
    """The timed kernel: `hops` dependent loads, each one `mov rax, [rax]` (see intrinsics).
    Unrolled by 8 so the loop counter hides behind the loads. No GIL: the loaded-latency and
    sharing probes run it in one thread while other threads stream or chase."""
    p = start_addr
    for _ in range(hops >> np.uint64(3)):
        p = load_u64(p)
        p = load_u64(p)
        p = load_u64(p)
        p = load_u64(p)
        p = load_u64(p)
        p = load_u64(p)
        p = load_u64(p)
        p = load_u64(p)
    return p


@njit(cache=True)
def add_xor_chain(n, x, k1, k2):
    """16 dependent one-cycle integer ops per iteration (add, xor alternate so nothing folds)."""
    for _ in range(n):
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
    return x


@njit(cache=True)
def add_xor_chain_half(n, x, k1, k2):
    """The same loop with 8 ops per iteration: the difference cancels the loop overhead."""
    for _ in range(n):
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
        x = (x + k1) ^ k2
    return x


def _timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter_ns()
    r = fn(*args)
    return float(time.perf_counter_ns() - t0), r


def _addr(p) -> np.uint64:
    """Numba hands a uint64 back as a Python int; passed in again as int64 it would compile a
    second chase where int64 and uint64 unify to float64 (a conversion on every hop)."""
    return np.uint64(p)


class ChaseProbe:
    """Pointer chase over `size_bytes` with slots `slot_bytes` apart (a cache line).

    setup() builds the cycle, run() returns ns per hop for each repetition, verify() walks one
    lap and checks it visits every slot exactly once (kept apart from timing).
    """

    name = "latency"
    backend = "cpu"

    def __init__(self, slot_bytes: int = 64, page_kind: str = "huge", seed: int = 12345,
                 region_bytes: int = 0):
        """`region_bytes` > 0: the page-local layout (region_cycle) with regions of that size,
        instead of one random cycle over the whole buffer."""
        self.slot_bytes = max(8, int(slot_bytes))
        self.page_kind = page_kind
        self.seed = seed
        self.region_bytes = int(region_bytes)
        self.buffer: Buffer | None = None
        self.n_slots = 0

    def setup(self, size_bytes: int) -> None:
        self.close()
        slot_words = self.slot_bytes // 8
        self.n_slots = max(2, int(size_bytes) // self.slot_bytes)
        self.buffer = alloc(self.n_slots * self.slot_bytes, np.uint64, self.page_kind)
        if self.region_bytes > 0:
            succ = region_cycle(self.n_slots, max(2, self.region_bytes // self.slot_bytes), self.seed)
        else:
            succ = sattolo_cycle(self.n_slots, self.seed)
        fill_cycle(self.buffer.array, self.start_addr, succ, np.uint64(slot_words))

    def run(self, repetitions: int, min_hops: int = 20_000, target_ns: float = 3e6) -> list[float]:
        """ns per dependent load, one value per repetition, after a warm-up lap.

        Each repetition goes on from where the last one stopped: restarting at slot 0 would
        re-walk a prefix the previous repetition just cached whenever a repetition is shorter
        than a lap (memory-sized buffers), and report cache latency as memory latency.
        """
        assert self.buffer is not None, "setup() first"
        p = self.start_addr
        # one lap brings a cache-sized set in; past ~1M slots the set is beyond any cache anyway
        p = _addr(chase(p, np.uint64((min(self.n_slots, 1 << 20) + 7) // 8 * 8)))
        hops = max(min_hops, 8) // 8 * 8
        dt, p = _timed(chase, p, np.uint64(hops))
        p = _addr(p)
        per_hop = max(dt / hops, 0.05)
        hops = int(max(min_hops, target_ns / per_hop)) // 8 * 8
        out = []
        for _ in range(repetitions):
            dt, p = _timed(chase, p, np.uint64(hops))
            p = _addr(p)
            out.append(dt / hops)
        return out

    def verify(self) -> bool:
        """One lap visits every slot once and comes back; raises ProbeError otherwise."""
        assert self.buffer is not None
        return check(bool(verify_cycle(self.start_addr, np.uint64(self.slot_bytes), self.n_slots)),
                     f"the chase over {self.n_slots} slots is not one cycle")

    @property
    def start_addr(self) -> np.uint64:
        assert self.buffer is not None
        return np.uint64(self.buffer.array.ctypes.data)

    def close(self) -> None:
        if self.buffer is not None:
            self.buffer.close()
            self.buffer = None


@njit(cache=True)
def verify_cycle(base_addr, slot_bytes, n_slots):
    """One lap from the base must visit every slot once and come back (a single cycle)."""
    seen = np.zeros(n_slots, dtype=np.uint8)
    p = base_addr
    for _ in range(n_slots):
        if p < base_addr:
            return False
        k = (p - base_addr) // slot_bytes
        if k >= n_slots or seen[k]:
            return False
        seen[k] = 1
        p = load_u64(p)
    return p == base_addr


def clock_samples(repetitions: int, iters: int = 2_000_000) -> list[float]:
    """Measured core clock in GHz, one value per repetition: (16-op loop - 8-op loop) / 8 ops."""
    k1, k2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0x5851F42D4C957F2D)
    x = np.uint64(1)
    add_xor_chain(10, x, k1, k2)
    add_xor_chain_half(10, x, k1, k2)
    out = []
    for _ in range(repetitions):
        # a repetition preempted in its long half can time the long loop no slower than the
        # short one: it is taken again (a few times at most), else kept as NaN for the caller
        for _try in range(3):
            t_full, _ = _timed(add_xor_chain, iters, x, k1, k2)
            t_half, _ = _timed(add_xor_chain_half, iters, x, k1, k2)
            ns_per_op = (t_full - t_half) / (iters * 8)
            if ns_per_op > 0:
                break
        out.append(1.0 / ns_per_op if ns_per_op > 0 else float("nan"))
    return out
