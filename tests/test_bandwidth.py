"""Bandwidth kernels: the byte-counting table against hand counts, and every kernel verified on
small arrays at one and at all threads (values, not timings)."""

import numpy as np
import pytest

from memprobe.probes.cpu import bandwidth as bw
from memprobe.probes.cpu.bandwidth import KERNELS, BandwidthError, BandwidthProbe, bandwidth_gbs, kernel_by_name


def test_table_matches_hand_counts():
    # STREAM counting, float64: read a (8 B); write a (8 B); copy reads b writes a (16 B);
    # triad reads b and c, writes a (24 B) and does a multiply and an add
    # a streaming-store variant moves the same STREAM bytes as its base (the RFO it saves was
    # never counted)
    hand = {"read": (1, 8, 0, 1), "write": (1, 0, 8, 0), "copy": (2, 8, 8, 0), "triad": (3, 16, 8, 2)}
    hand.update({f"{k}_nt": hand[k] for k in ("write", "copy", "triad")})
    assert {k.name for k in KERNELS} == set(hand)
    for k in KERNELS:
        assert (k.arrays, k.read_bytes, k.write_bytes, k.flops) == hand[k.name]
        assert k.bytes_per_element == k.read_bytes + k.write_bytes
        assert (k.stores, k.base) == (("streaming", k.name[:-3]) if k.name.endswith("_nt") else ("cached", ""))
    assert [k.kid for k in KERNELS] == list(range(len(KERNELS)))


def test_bandwidth_is_bytes_over_ns():
    triad = kernel_by_name("triad")
    assert bandwidth_gbs(triad, 1000, 24000.0) == pytest.approx(1.0)
    assert np.isnan(bandwidth_gbs(triad, 1000, 0.0))
    with pytest.raises(KeyError):
        kernel_by_name("scale")


@pytest.mark.parametrize("name", [k.name for k in KERNELS])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_values(name, threads):
    p = BandwidthProbe(name)
    try:
        p.setup(48 << 10)
        assert p.n_elements * p.kernel.arrays * 8 <= 48 << 10
        ns = p.run(2, threads=threads, target_ns=2e4)
        assert len(ns) == 2 and all(x > 0 for x in ns)
        p.verify()
    finally:
        p.close()


def test_kernels_direct_small_arrays():
    n = 37  # odd: exercises every remainder loop
    a = np.zeros(n)
    b = np.arange(n, dtype=np.float64)
    c = np.arange(n, dtype=np.float64) * 2
    e = np.empty(0)
    assert bw.read_kernel(b, e, e, 0.0, 1) == b.sum()
    bw.write_kernel(a, e, e, 3.0, 1)
    assert np.all(a == 3.0)
    bw.copy_kernel(a, b, e, 0.0, 1)
    assert np.array_equal(a, b)
    bw.triad_kernel(a, b, c, 3.0, 1)
    assert np.array_equal(a, b + 3.0 * c)
    assert bw.run_kernel(0, b, e, e, 0.0, 3) == 3 * b.sum()
    bw.triad_kernel(a, b, c, 3.0, 4)  # repeated passes write the same values
    assert np.array_equal(a, b + 3.0 * c)
    assert bw.run_parallel(0, b, e, e, 0.0, 3, 2) == 3 * b.sum()


def test_verify_fails_loudly_on_wrong_values():
    p = BandwidthProbe("triad")
    try:
        p.setup(16 << 10)
        p.run(1, target_ns=1e4)
        p.arrays[0][5] += 1.0
        with pytest.raises(BandwidthError):
            p.verify()
    finally:
        p.close()


@pytest.mark.parametrize("offset", [0, 1, 3, 7])
@pytest.mark.parametrize("n", [0, 5, 8, 37, 1000, 2 * 2048 + 37, 3 * 2048])  # whole 4-page blocks and a tail
def test_streaming_kernels_any_alignment(offset, n):
    """The non-temporal kernels align to a 64-byte line first (an unaligned vmovntpd faults):
    every start offset and length, including ones with no whole line, gives exact values and
    leaves the neighbours alone."""
    e = np.empty(0)
    full = np.zeros(n + offset + 8)
    a = full[offset:offset + n]
    b = np.arange(n, dtype=np.float64)
    c = np.arange(n, dtype=np.float64) * 2
    bw.write_nt_kernel(a, e, e, 3.0, 1)
    assert np.all(a == 3.0)
    bw.copy_nt_kernel(a, b, e, 0.0, 1)
    assert np.array_equal(a, b)
    bw.triad_nt_kernel(a, b, c, 3.0, 1)
    assert np.array_equal(a, b + 3.0 * c)
    assert not full[:offset].any() and not full[offset + n:].any()


def test_shared_arena_fills_an_array_once_and_again_after_a_write():
    """Kernels on one arena with arrays of one size (as at memory's STREAM-sized point): copy
    fills b, triad finds b holding its pattern and fills only c; write overwrites a, so read
    fills a again. Every kernel still verifies."""
    from memprobe.probes.cpu.bandwidth import arena_bytes, fill_zero
    from memprobe.probes.cpu.buffers import alloc

    array_bytes = 32 << 10
    arena = alloc(arena_bytes(3 * array_bytes), np.float64, "huge")
    fill_zero(arena.array)
    try:
        fills = []
        for name in ("copy", "triad", "write", "read"):
            p = BandwidthProbe(name, arena=arena)
            before = dict(arena.filled)
            p.setup(p.kernel.arrays * array_bytes)
            fills.append(sorted(i for key, i in arena.filled.items() if before.get(key) != i))
            p.run(1, target_ns=1e4)
            p.verify()
        assert fills == [[1], [2], [], [0]]
    finally:
        arena.close()


def test_split_arena_carves_memory_arrays_after_the_cached_part():
    """The bandwidth stage's arena: cached working sets at its start (huge pages), memory's
    arrays from `offset_bytes` on (4 KiB pages). The two probes share the arena without
    touching each other's arrays, and a one-pass run on all threads (the pool woken on a few
    pages only) still writes every element and verifies."""
    from memprobe.probes.cpu.bandwidth import WAKE_ELEMENTS, arena_bytes, fill_zero
    from memprobe.probes.cpu.buffers import HUGE_PAGE_BYTES, alloc_split

    offset = HUGE_PAGE_BYTES
    mem_set = 3 * (WAKE_ELEMENTS * 8 * 4)  # each array 4x the wake slice
    arena = alloc_split(offset, arena_bytes(mem_set))
    assert arena.array.nbytes >= offset + arena_bytes(mem_set)
    fill_zero(arena.array)
    try:
        cached = BandwidthProbe("triad", arena=arena)
        cached.setup(3 * (16 << 10))
        cached.run(1, target_ns=1e4)
        mem = BandwidthProbe("triad", arena=arena, offset_bytes=offset)
        mem.setup(mem_set)
        a, b, c = mem.arrays
        start = (a.ctypes.data - arena.array.ctypes.data)
        assert start == offset  # carved after the cached part
        mem.run(1, threads=2, target_ns=1.0)
        mem.verify()
        cached.verify()  # the cached arrays were left alone
        assert np.array_equal(a, b + 3.0 * c)
    finally:
        arena.close()
