"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): GPU latency.

One thread chases a random single cycle (Sattolo, as on the CPU) of `slot_bytes`-spaced slots;
each slot's first word holds the device address of the next slot, so a hop is one load:
`ld.global.ca` (default caching, through L1) or `ld.global.cg` (L1 bypassed, L2 only). The
kernel times whole laps with the SM clock (%clock64) and the GPU timer (%globaltimer) and
returns the raw totals; scan/gpu.py turns them into cycles and ns per hop.

SM placement: the grid has several one-thread blocks per SM; a block runs a chain only if
%smid equals that chain's target SM and it wins an atomic claim, so chains run on chosen SMs
(all chains of one launch run at the same time). A target of -1 means "any SM".

Kernels never summarise. Under the simulator (see clock.py) everything runs with counters in
place of clocks: the chain logic, placement and shapes are testable, the numbers are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import cuda

from memprobe.probes.protocol import check

from memprobe.probes.cpu.chase import sattolo_cycle
from memprobe.probes.gpu.clock import (
    SIMULATOR,
    clock64,
    device_address,
    globaltimer_ns,
    load_ca,
    load_cg,
    smid,
)

SLOT_BYTES = 128  # one L1 line (four 32 B L2 sectors): every hop touches a new line
BLOCKS_PER_SM = 4  # launch this many one-thread blocks per SM so every SM gets at least one
LOADS = {"ca": load_ca, "cg": load_cg}


def _make_chase_kernel(load):
    """One kernel per load flavour (a per-hop branch on the flavour would cost in the loop)."""

    def chase_kernel(buf, starts, targets, warm_hops, hops, claim, out_cycles, out_ns, out_sm, sink):
        if cuda.threadIdx.x != 0:
            return
        sm = smid()
        for j in range(targets.shape[0]):
            if targets[j] == sm or targets[j] < 0:
                if cuda.atomic.cas(claim, j, 0, 1) == 0:
                    p = starts[j]
                    for _ in range(warm_hops >> 3):  # untimed lap: fills L1 (per SM) and L2
                        p = load(buf, p)
                        p = load(buf, p)
                        p = load(buf, p)
                        p = load(buf, p)
                        p = load(buf, p)
                        p = load(buf, p)
                        p = load(buf, p)
                        p = load(buf, p)
                    for r in range(out_cycles.shape[1]):
                        t0 = clock64()
                        g0 = globaltimer_ns()
                        for _ in range(hops >> 3):
                            p = load(buf, p)
                            p = load(buf, p)
                            p = load(buf, p)
                            p = load(buf, p)
                            p = load(buf, p)
                            p = load(buf, p)
                            p = load(buf, p)
                            p = load(buf, p)
                        sink[j] = p  # consumes the last load before the closing clock reads
                        g1 = globaltimer_ns()
                        t1 = clock64()
                        out_cycles[j, r] = t1 - t0
                        out_ns[j, r] = g1 - g0
                    out_sm[j] = sm
                    return

    return cuda.jit(chase_kernel, shared_memory_carveout="maxl1")


def _make_hop_kernel(load):
    """Per-hop timing (for the near/far L2 halves): each hop is timed alone and its address
    kept, so latency can be grouped by address. The empty-region cost is measured too."""

    def hop_kernel(buf, start, target, warm_hops, claim, out_hop_cycles, out_addr,
                   out_overhead, out_sm, sink):
        if cuda.threadIdx.x != 0:
            return
        sm = smid()
        if target >= 0 and sm != target:
            return
        if cuda.atomic.cas(claim, 0, 0, 1) != 0:
            return
        p = start
        for _ in range(warm_hops):
            p = load(buf, p)
        for k in range(out_overhead.shape[0]):  # clock + store with no load in between
            t0 = clock64()
            sink[0] = p
            t1 = clock64()
            out_overhead[k] = t1 - t0
        for k in range(out_hop_cycles.shape[0]):
            t0 = clock64()
            q = load(buf, p)
            sink[0] = q  # the store waits for q: the closing clock read comes after the load
            t1 = clock64()
            out_hop_cycles[k] = t1 - t0
            out_addr[k] = p
            p = q
        out_sm[0] = sm

    return cuda.jit(hop_kernel, shared_memory_carveout="maxl1")


_KERNELS: dict[tuple[str, str], object] = {}


def _kernel(kind: str, path: str):
    key = (kind, path)
    if key not in _KERNELS:
        make = _make_chase_kernel if kind == "chase" else _make_hop_kernel
        _KERNELS[key] = make(LOADS[path])
    return _KERNELS[key]


@cuda.jit
def touch_kernel(buf, out):
    """Many-thread read of the whole buffer: brings it into L2 (as much as fits) before a lap."""
    i = cuda.grid(1)
    s = np.uint64(0)
    while i < buf.shape[0]:
        s ^= buf[i]
        i += cuda.gridsize(1)
    if s == np.uint64(1):  # practically never: keeps the loads alive
        out[0] = s


def build_chains(n_chains: int, n_slots: int, slot_bytes: int, base_addr: int, seed: int) -> np.ndarray:
    """Host image of `n_chains` independent single cycles, chain j in slots [j*n, (j+1)*n):
    slot k's first word = address of its successor's first word. Words beyond the first of a
    slot stay 0 (never read)."""
    words = slot_bytes // 8
    img = np.zeros(n_chains * n_slots * words, dtype=np.uint64)
    for j in range(n_chains):
        succ = sattolo_cycle(n_slots, seed + j).astype(np.uint64)
        first = np.uint64(j * n_slots)
        slots = first + np.arange(n_slots, dtype=np.uint64)
        img[slots * np.uint64(words)] = np.uint64(base_addr) + (first + succ) * np.uint64(slot_bytes)
    return img


def walk_chain(img: np.ndarray, base_addr: int, start_slot: int, n_slots: int, slot_bytes: int) -> bool:
    """True if the chain starting at `start_slot` visits n_slots distinct slots and returns."""
    words = slot_bytes // 8
    seen = np.zeros(len(img) // words, dtype=bool)
    p = start_slot
    for _ in range(n_slots):
        if seen[p]:
            return False
        seen[p] = True
        addr = int(img[p * words]) - base_addr
        if addr < 0 or addr % slot_bytes:
            return False
        p = addr // slot_bytes
    return p == start_slot


@dataclass
class ChaseSamples:
    """Raw output of one chase launch: per chain and repetition, clock64 cycles and
    globaltimer ns for `hops` hops; the SM each chain ran on (-1: not placed)."""

    hops: int
    cycles: np.ndarray  # [chains, reps] uint64
    ns: np.ndarray  # [chains, reps] uint64
    sm: list[int] = field(default_factory=list)


class GpuChaseProbe:
    """Pointer chase on the GPU: setup(size_bytes) builds `n_chains` cycles of size_bytes each,
    run() launches them (on chosen SMs) and returns raw totals, verify() walks the chains on
    the host from the device copy (apart from timing)."""

    name = "latency"
    backend = "cuda"

    def __init__(self, path: str = "ca", slot_bytes: int = SLOT_BYTES, seed: int = 12345,
                 sm_count: int = 1):
        if path not in LOADS:
            raise ValueError(f"path must be one of {sorted(LOADS)}")
        self.path = path
        self.slot_bytes = int(slot_bytes)
        self.seed = seed
        self.sm_count = max(1, int(sm_count))
        self.n_slots = 0
        self.n_chains = 0
        self.dbuf = None
        self.base_addr = 0

    def setup(self, size_bytes: int, n_chains: int = 1) -> None:
        self.close()
        self.n_slots = max(2, int(size_bytes) // self.slot_bytes)
        self.n_chains = int(n_chains)
        words = self.slot_bytes // 8
        self.dbuf = cuda.device_array(self.n_chains * self.n_slots * words, dtype=np.uint64)
        self.base_addr = device_address(self.dbuf)
        img = build_chains(self.n_chains, self.n_slots, self.slot_bytes, self.base_addr, self.seed)
        self.dbuf.copy_to_device(img)

    def starts(self) -> np.ndarray:
        return np.array([self.base_addr + j * self.n_slots * self.slot_bytes
                         for j in range(self.n_chains)], dtype=np.uint64)

    def warm_l2(self) -> None:
        """Stream the whole buffer once with many threads (L2 warm-up; L1 is per SM and is
        warmed by the chasing thread's own untimed lap)."""
        assert self.dbuf is not None
        out = cuda.device_array(1, dtype=np.uint64)
        blocks = 1 if SIMULATOR else self.sm_count * 8
        touch_kernel[blocks, 32 if SIMULATOR else 256](self.dbuf, out)

    def run(self, repetitions: int, hops: int, warm_hops: int,
            targets: list[int] | None = None) -> ChaseSamples:
        """Chase every chain at once (chain j on SM targets[j]; default: chain j anywhere)."""
        assert self.dbuf is not None, "setup() first"
        hops = max(8, int(hops) // 8 * 8)
        warm_hops = int(warm_hops) // 8 * 8
        tg = np.array(targets if targets is not None else [-1] * self.n_chains, dtype=np.int32)
        if len(tg) != self.n_chains:
            raise ValueError("one target SM per chain")
        claim = cuda.to_device(np.zeros(self.n_chains, dtype=np.int32))
        cyc = cuda.to_device(np.zeros((self.n_chains, repetitions), dtype=np.uint64))
        ns = cuda.to_device(np.zeros((self.n_chains, repetitions), dtype=np.uint64))
        sm = cuda.to_device(np.full(self.n_chains, -1, dtype=np.int32))
        sink = cuda.device_array(self.n_chains, dtype=np.uint64)
        blocks = self.sm_count * BLOCKS_PER_SM
        _kernel("chase", self.path)[blocks, 1](
            self.dbuf, cuda.to_device(self.starts()), cuda.to_device(tg), np.uint64(warm_hops),
            np.uint64(hops), claim, cyc, ns, sm, sink)
        cuda.synchronize()
        return ChaseSamples(hops=hops, cycles=cyc.copy_to_host(), ns=ns.copy_to_host(),
                            sm=[int(v) for v in sm.copy_to_host()])

    def run_per_hop(self, n_hops: int, warm_hops: int, target: int = -1,
                    n_overhead: int = 64) -> dict:
        """Time `n_hops` single hops of chain 0 on SM `target`: cycles per hop, the slot index
        each hop loaded, the clock+store overhead samples and the SM it ran on."""
        assert self.dbuf is not None, "setup() first"
        claim = cuda.to_device(np.zeros(1, dtype=np.int32))
        hop_c = cuda.to_device(np.zeros(n_hops, dtype=np.uint64))
        addr = cuda.to_device(np.zeros(n_hops, dtype=np.uint64))
        over = cuda.to_device(np.zeros(n_overhead, dtype=np.uint64))
        sm = cuda.to_device(np.full(1, -1, dtype=np.int32))
        sink = cuda.device_array(1, dtype=np.uint64)
        _kernel("hop", self.path)[self.sm_count * BLOCKS_PER_SM, 1](
            self.dbuf, np.uint64(self.starts()[0]), np.int32(target), np.uint64(warm_hops),
            claim, hop_c, addr, over, sm, sink)
        cuda.synchronize()
        slots = (addr.copy_to_host() - np.uint64(self.base_addr)) // np.uint64(self.slot_bytes)
        return {"cycles": hop_c.copy_to_host(), "slots": slots.astype(np.int64),
                "overhead_cycles": over.copy_to_host(), "sm": int(sm.copy_to_host()[0])}

    def verify(self) -> bool:
        """Each chain is one cycle through its slots (walked on the host); raises ProbeError."""
        assert self.dbuf is not None
        img = self.dbuf.copy_to_host()
        return check(all(walk_chain(img, self.base_addr, j * self.n_slots, self.n_slots, self.slot_bytes)
                         for j in range(self.n_chains)), f"a GPU chase chain of {self.n_slots} slots is not one cycle")

    def close(self) -> None:
        self.dbuf = None  # numba frees device memory when the last reference goes
