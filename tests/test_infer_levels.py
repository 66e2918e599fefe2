"""Inference recovers known hierarchies from simulated curves: count, sizes (25 %), latencies
(10 %), across edge shapes, noise, densities and a VM's slice of an L3."""

import zlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hierarchy_sim import SimLevel, geometric_sizes, latency_curve
from memprobe.infer import InferenceError, infer_levels

KiB, MiB = 1 << 10, 1 << 20


def size_right(got, want_bytes: int, size_tol: float) -> bool:
    """Within size_tol of the truth, or the truth inside the reported interval when that is
    no wider than two octaves (the shapes the data cannot tell apart put C apart: a free
    logistic truth's 50 % point is one of them)."""
    lo, hi = got.size_range_bytes or (0, 0)
    return (got.size_bytes == pytest.approx(want_bytes, rel=size_tol)
            or (lo <= want_bytes <= hi and hi <= 4 * lo))


def check(h, levels, memory_latency, size_tol=0.25, lat_tol=0.10):
    assert len(h.levels) == len(levels) + 1, [(lv.name, lv.size_bytes, lv.latency) for lv in h.levels]
    for got, want in zip(h.levels, levels):
        assert size_right(got, want.size_bytes, size_tol), (got, want)
        assert got.latency == pytest.approx(want.latency, rel=lat_tol), got
    assert h.levels[-1].name == "memory" and h.levels[-1].size_bytes is None
    assert h.levels[-1].latency == pytest.approx(memory_latency, rel=lat_tol)


CASES = {
    "zen3-like, sharp": ([SimLevel(32 * KiB, 1.3), SimLevel(512 * KiB, 4.0), SimLevel(32 * MiB, 14.0)], 95.0),
    "two levels only": ([SimLevel(64 * KiB, 1.0), SimLevel(2 * MiB, 6.0)], 80.0),
    "big L1 (M1-like)": ([SimLevel(128 * KiB, 0.9), SimLevel(12 * MiB, 5.5)], 95.0),
    "small L1, 4 levels": ([SimLevel(16 * KiB, 1.0), SimLevel(256 * KiB, 3.5), SimLevel(2 * MiB, 9.0),
                            SimLevel(32 * MiB, 25.0)], 110.0),
    "colour edges (VM pages)": ([SimLevel(32 * KiB, 1.3, "colour"), SimLevel(512 * KiB, 4.5, "colour"),
                                 SimLevel(8 * MiB, 16.0, "colour", ways=16)], 120.0),
    "logistic edges": ([SimLevel(48 * KiB, 1.0, "logistic"), SimLevel(1 * MiB, 3.0, "logistic"),
                        SimLevel(16 * MiB, 11.0, "logistic", width_oct=0.25)], 100.0),
    "VM slice of a 32 MiB L3": ([SimLevel(32 * KiB, 1.4), SimLevel(512 * KiB, 5.0, "colour"),
                                 SimLevel(4 * MiB, 18.0, "colour", ways=16)], 160.0),
    "GPU-like, cycles": ([SimLevel(200 * KiB, 40.0), SimLevel(25 * MiB, 290.0), SimLevel(50 * MiB, 520.0, "logistic", width_oct=0.12)], 700.0),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("noise", [0.0, 0.02, 0.04])
def test_recovers_hierarchy(name, noise):
    if name.startswith("GPU-like") and noise > 0.02:
        # a level one octave wide (H100's far L2 half) is 4 points; at 4 % noise a 10 % band
        # splits it in ~1 of 4 draws. Published GPU curves are far quieter (~1 %).
        pytest.skip("known limit: a one-octave level is not resolved reliably at 4 % noise")
    levels, mem = CASES[name]
    sizes = geometric_sizes(2 * KiB, max(256 * MiB, levels[-1].size_bytes * 8), 4)
    lat = latency_curve(levels, mem, sizes, noise=noise, seed=zlib.crc32(name.encode()) % 1000)
    h = infer_levels(sizes, lat)
    if name.startswith("GPU-like"):
        # the far L2 half (520 cycles between 290 and memory's 700) holds no more than the near
        # half could as a mix of its hits and memory's: the curve cannot tell it from the near
        # half's tail, so it is one L2 whose interval runs past the far half (issue 23 item 5)
        from memprobe.result import Code

        check(h, levels[:2], mem)
        l2 = h.caches[-1]
        assert [c for c, _ in l2.notes] == [Code.MIXTURE_TAIL]
        assert l2.size_range_bytes[1] >= levels[2].size_bytes
        return
    check(h, levels, mem)


@pytest.mark.parametrize("seed", range(5))
def test_noise_seeds_do_not_add_levels(seed):
    levels, mem = CASES["zen3-like, sharp"]
    sizes = geometric_sizes(4 * KiB, 256 * MiB, 4)
    h = infer_levels(sizes, latency_curve(levels, mem, sizes, noise=0.04, seed=seed))
    check(h, levels, mem)


def test_one_point_per_octave():
    """lmbench/sbc-bench density: sizes can only be placed within the octave they fall in."""
    levels, mem = [SimLevel(32 * KiB, 1.2), SimLevel(512 * KiB, 4.0), SimLevel(8 * MiB, 12.0)], 110.0
    sizes = geometric_sizes(4 * KiB, 128 * MiB, 1)
    h = infer_levels(sizes, latency_curve(levels, mem, sizes))
    check(h, levels, mem, size_tol=0.45)
    for got, want in zip(h.levels, levels):
        lo, hi = got.size_range_bytes
        assert lo <= want.size_bytes <= hi


def test_two_points_per_octave_intervals_hold_the_truth_at_the_points_around_c():
    """A climb with under three points on it (two points per octave) takes in the sweep points
    on either side of the fitted C, not those around the whole climb: simulated hierarchies of
    every shape hold the truth every time, at a median under one octave (edges.fit_edge; the
    whole-climb rule gave 1.25 octaves on the same draws)."""
    import math
    import statistics

    from hierarchy_sim import random_hierarchy, visible

    rng = np.random.default_rng(11)
    inside, widths = [], []
    while len(inside) < 60:
        levels, mem, _kind = random_hierarchy(rng)
        sizes = geometric_sizes(2 * KiB, levels[-1].size_bytes * 16, 2)
        if not visible(levels, mem, sizes):
            continue
        y = latency_curve(levels, mem, sizes, noise=float(rng.uniform(0, 0.03)), seed=int(rng.integers(1 << 30)))
        h = infer_levels(sizes, y)
        assert len(h.caches) == len(levels)
        for got, want in zip(h.caches, levels):
            lo, hi = got.size_range_bytes
            inside.append(lo <= want.size_bytes <= hi)
            widths.append(math.log2(hi / lo))
    assert all(inside)
    assert statistics.median(widths) <= 1.0


def test_memory_not_reached_is_flagged():
    levels = [SimLevel(32 * KiB, 1.0), SimLevel(1 * MiB, 4.0, "logistic")]
    sizes = geometric_sizes(4 * KiB, int(1.6 * MiB), 4)  # stops inside the climb to memory
    lat = latency_curve(levels, 100.0, sizes)
    h = infer_levels(sizes, lat)
    assert not h.memory_reached and h.warnings
    assert h.levels[-1].name == "memory"


def test_unit_is_carried_and_order_does_not_matter():
    levels, mem = CASES["two levels only"]
    sizes = geometric_sizes(4 * KiB, 64 * MiB, 4)
    lat = latency_curve(levels, mem, sizes)
    perm = np.random.default_rng(1).permutation(len(sizes))
    h = infer_levels(sizes[perm], lat[perm], unit="cycles")
    assert h.unit == "cycles"
    check(h, levels, mem)


def test_real_curve_of_this_vm():
    """A huge-page curve measured by memprobe on an AMD EPYC Zen 3 KVM guest (2 vCPUs):
    sysfs declares L1d 32 KiB and L2 512 KiB; the VM sees ~4 MiB of the 32 MiB L3."""
    import csv
    from pathlib import Path

    rows = list(csv.DictReader(open(Path(__file__).parent / "data" / "zen3_kvm_hugepage.csv")))
    h = infer_levels([float(r["size_bytes"]) for r in rows], [float(r["latency_ns"]) for r in rows])
    assert len(h.levels) == 4
    assert h.levels[0].size_bytes == pytest.approx(32 * KiB, rel=0.25)
    assert h.levels[1].size_bytes == pytest.approx(512 * KiB, rel=0.25)
    assert 2 * MiB < h.levels[2].size_bytes < 8 * MiB


@pytest.mark.parametrize("sizes,lat", [([1, 2, 3], [1, 1, 1]), ([1, 2, 3, 4], [1, -1, 2, 3]),
                                       ([1, 2, 3, 4], [1, 2, 3])])
def test_bad_curves_raise_inference_error(sizes, lat):
    with pytest.raises(InferenceError):
        infer_levels(sizes, lat)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    l1_kib=st.sampled_from([16, 32, 48, 64, 128]),
    ratio2=st.floats(8, 64), ratio3=st.floats(8, 64),
    lat1=st.floats(0.7, 2.0), step2=st.floats(2.5, 5.0), step3=st.floats(2.5, 5.0), step_mem=st.floats(3, 10),
    edge=st.sampled_from(["sharp", "colour", "logistic"]), noise=st.floats(0, 0.03), seed=st.integers(0, 99),
)
def test_random_three_level_hierarchies(l1_kib, ratio2, ratio3, lat1, step2, step3, step_mem, edge, noise, seed):
    s1 = l1_kib * KiB
    s2 = int(s1 * ratio2)
    s3 = int(s2 * ratio3)
    levels = [SimLevel(s1, lat1, edge), SimLevel(s2, lat1 * step2, edge), SimLevel(s3, lat1 * step2 * step3, edge)]
    mem = levels[-1].latency * step_mem
    sizes = geometric_sizes(2 * KiB, s3 * 16, 4)
    # only hierarchies whose every level is visible as a plateau: >= 3 points (half an octave)
    # of the noiseless curve within 5 % of its hit latency. Broad edges on both sides of a
    # 3-octave level can overlap so the curve only passes through that latency on its way up;
    # no reading of the curve could tell such a level from a slope.
    clean = latency_curve(levels, mem, sizes)
    assume(all(np.sum(np.abs(clean / lv.latency - 1) < 0.05) >= 3 for lv in levels))
    check(infer_levels(sizes, latency_curve(levels, mem, sizes, noise=noise, seed=seed)), levels, mem)


KNOWN_MISS = pytest.mark.xfail(strict=True, reason="known limit: an L3 2.5x above an L2 with page-colour "
                                "edges on both sides reads as a shelf on a slope")


@pytest.mark.parametrize("ratio2, step3, step_mem, noise, seed", [
    pytest.param(22.25, 2.5, 5.0, 0.029296875, 69, marks=KNOWN_MISS),
    (22.0, 3.0, 10.0, 0.0234375, 67),  # read right since the shoulder search covers dense curves
])
def test_three_levels_with_soft_edges_known_misses(ratio2, step3, step_mem, noise, seed):
    """Two hierarchies the random test above once drew (its examples are fixed since, so CI is
    the same run every time); kept here so the limit stays visible and a fix shows up."""
    s1 = 32 * KiB
    s2 = int(s1 * ratio2)
    levels = [SimLevel(s1, 1.0, "colour"), SimLevel(s2, 3.0, "colour"), SimLevel(int(s2 * 8.0), 3.0 * step3, "colour")]
    mem = levels[-1].latency * step_mem
    sizes = geometric_sizes(2 * KiB, levels[-1].size_bytes * 16, 4)
    check(infer_levels(sizes, latency_curve(levels, mem, sizes, noise=noise, seed=seed)), levels, mem)


def test_sparse_curve_level_seen_only_as_a_shoulder():
    """One point per octave, a 2 MiB level whose two points (1 and 2 MiB) differ by 1.4x: no
    plateau, but the curve bends there (a Raspberry Pi 5-like curve, numbers of our own)."""
    sizes = geometric_sizes(4 * KiB, 128 * MiB, 1)
    lat = [1.7] * 5 + [5.0, 5.0, 7.6, 17.0, 24.0, 80.0, 122.0, 123.0, 134.0, 138.0, 139.0]
    h = infer_levels(sizes, lat)
    assert [lv.name for lv in h.levels] == ["L1", "L2", "L3", "memory"]
    l2, l3 = h.levels[1], h.levels[2]
    # the shoulder's two points are the level: its latency is their median; on one point per
    # octave the interval runs from the last point on the level to the first where the climb
    # to the next is half done: here 4 MiB (80 ns, past half of 24 -> 122), one octave
    assert l3.plateau_bytes == (1 * MiB, 2 * MiB) and l3.latency == pytest.approx(20.5)
    assert l3.size_range_bytes == (2 * MiB, 4 * MiB) and 2 * MiB <= l3.size_bytes <= 4 * MiB
    # L2: at least the last point on it (256 KiB) and the lines still held at 512 KiB (7.6 ns:
    # 83 % of them hit, 425 KiB), below that first point off; its 512 KiB truth inside
    lo, hi = l2.size_range_bytes
    assert 256 * KiB <= lo <= 512 * KiB <= hi <= 2 * MiB
    # the same curve without the bend (1 -> 2 MiB rising like its neighbours) has no level there
    ramp = lat[:9] + [38.0] + lat[10:]
    assert [lv.name for lv in infer_levels(sizes, ramp).levels] == ["L1", "L2", "memory"]


def test_no_shoulder_after_the_last_plateau(monkeypatch):
    """A climbing tail (memory creeping, or not reached) has nothing above it: a bend in it is
    not a level."""
    import memprobe.infer.levels as L

    sizes = geometric_sizes(4 * KiB, 64 * MiB, 1)
    lat = [1.0] * 5 + [5.0] * 4 + [60.0, 114.0, 114.0, 145.0, 162.0, 235.0]
    got = [(lv.name, lv.size_bytes) for lv in infer_levels(sizes, lat).levels]
    monkeypatch.setattr(L, "_shoulders", lambda x, y, runs, dense: [])
    assert got == [(lv.name, lv.size_bytes) for lv in infer_levels(sizes, lat).levels]


def test_a_small_step_before_a_big_one_is_not_a_level():
    """A lucky page placement: the L2 holds 4.0 ns to ~200 KiB, 5.2 ns (a few overfull page
    colours) to ~500 KiB, then climbs 3.2x to the L3. The 1.3x shelf is the L2's soft edge:
    one L2, its latency the first plateau's, its edge past 500 KiB."""
    sizes = geometric_sizes(4 * KiB, 64 * MiB, 4)
    lat = []
    for s in sizes:
        lat.append(1.4 if s <= 28 * KiB else 4.0 if s <= 200 * KiB else 5.2 if s <= 500 * KiB
                   else 17.0 if s <= 4 * MiB else 150.0)
    h = infer_levels(sizes, lat)
    assert [lv.name for lv in h.levels] == ["L1", "L2", "L3", "memory"]
    l2 = h.levels[1]
    assert l2.latency == pytest.approx(4.0) and 430 * KiB <= l2.size_bytes <= 640 * KiB
    # a 1.3x step followed by a step of similar size is a level (no merging of real neighbours)
    lat2 = [v if v < 17.0 else (6.8 if v == 17.0 else 9.0) for v in lat]
    assert len(infer_levels(sizes, lat2).levels) == 5


def test_a_sparse_small_step_of_two_points_is_a_level_that_says_cache_or_tlb():
    """One point per octave: L2 at 10 ns for two points, then 15 ns for three (an in-order
    core's L2 beside an L3 only 1.5x slower, or a TLB's reach): a level, and the one before
    the step says it may be either (issue 26 item 2)."""
    from memprobe.result import Code

    sizes = geometric_sizes(4 * KiB, 64 * MiB, 1)
    lat = [1.1] * 4 + [10.0, 10.4, 15.0, 15.5, 16.0, 18.0, 70.0, 110.0, 120.0, 121.0, 122.0]
    h = infer_levels(sizes, lat)
    assert [lv.name for lv in h.levels] == ["L1", "L2", "L3", "memory"]
    l2 = h.levels[1]
    assert [c for c, _ in l2.notes] == [Code.CACHE_OR_TLB] and l2.latency == pytest.approx(10.2)
    assert l2.size_range_bytes == (64 * KiB, 128 * KiB) or l2.size_range_bytes[0] >= 64 * KiB


def test_a_one_point_small_step_before_a_big_one_is_not_a_level():
    """One point at 1.3x (a sparse sweep's TLB miss or first overfull colours) before a 3x
    climb is the start of that climb, not a level."""
    sizes = geometric_sizes(4 * KiB, 64 * MiB, 1)
    lat = [1.4] * 3 + [4.0] * 3 + [5.2, 17.0, 17.0, 17.0, 150.0, 150.0, 150.0, 150.0, 150.0]
    h = infer_levels(sizes, lat)
    assert [lv.name for lv in h.levels] == ["L1", "L2", "L3", "memory"]
    assert h.levels[1].latency == pytest.approx(4.0)


# ---- fitted transition shapes ----------------------------------------------------------------
MIXED = {
    "sharp L1, random L2, page-colour L3": ([SimLevel(32 * KiB, 1.2, "sharp"), SimLevel(1 * MiB, 4.5, "random"),
                                            SimLevel(16 * MiB, 15.0, "colour", ways=16)], 110.0),
    "two levels, random": ([SimLevel(48 * KiB, 1.0, "random"), SimLevel(2 * MiB, 5.0, "random")], 90.0),
    "GPU-like, random": ([SimLevel(224 * KiB, 35.0, "random"), SimLevel(48 * MiB, 250.0, "random")], 600.0),
    "big L1 (Apple-like)": ([SimLevel(128 * KiB, 0.9, "sharp"), SimLevel(12 * MiB, 5.5, "random")], 95.0),
}


@pytest.mark.parametrize("name", list(MIXED))
@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_mixed_shapes_within_15_percent(name, noise):
    levels, mem = MIXED[name]
    sizes = geometric_sizes(2 * KiB, levels[-1].size_bytes * 16, 4)
    h = infer_levels(sizes, latency_curve(levels, mem, sizes, noise=noise, seed=3))
    assert len(h.caches) == len(levels), [(c.size_bytes, c.edge) for c in h.caches]
    for got, want in zip(h.caches, levels):
        assert got.size_bytes == pytest.approx(want.size_bytes, rel=0.15), (got, want)
        assert got.latency == pytest.approx(want.latency, rel=0.10)
        lo, hi = got.size_range_bytes
        assert lo <= got.size_bytes <= hi


def test_random_replacement_is_read_at_its_capacity_not_past_it():
    """The climb of a random-replacement cache starts at C and is slow after it: half the lines
    miss only at 1.39 C. A rule at a fixed share of the gap read such caches ~1.27x too large."""
    levels = [SimLevel(32 * KiB, 1.0, "sharp"), SimLevel(1 * MiB, 5.0, "random")]
    sizes = geometric_sizes(2 * KiB, 64 * MiB, 8)
    h = infer_levels(sizes, latency_curve(levels, 100.0, sizes, noise=0.01, seed=1))
    l2 = h.caches[1]
    assert l2.edge == "random" and l2.size_bytes == pytest.approx(1 * MiB, rel=0.08)


def test_random_hierarchies_of_every_shape():
    """Hierarchies drawn across all shapes and kinds (hierarchy_sim.random_hierarchy, fixed
    seed): the count right in every one, random-replacement caches within 15 % every time, and
    sizes within 15 % in at least 90 % (benchmarks/infer_sim.py prints the figures for 200)."""
    from hierarchy_sim import random_hierarchy, visible

    rng = np.random.default_rng(7)
    sizes_ok, total, drawn = 0, 0, 0
    while drawn < 30:
        levels, mem, kind = random_hierarchy(rng)
        sizes = geometric_sizes(2 * KiB, levels[-1].size_bytes * 16, 4)
        if not visible(levels, mem, sizes):
            continue
        drawn += 1
        h = infer_levels(sizes, latency_curve(levels, mem, sizes, noise=float(rng.uniform(0, 0.03)),
                                              seed=int(rng.integers(1 << 30))))
        assert len(h.caches) == len(levels), (kind, levels, [c.size_bytes for c in h.caches])
        for got, want in zip(h.caches, levels):
            ok = got.size_bytes == pytest.approx(want.size_bytes, rel=0.15)
            if want.edge == "random":
                assert ok, (kind, got, want)
            sizes_ok += ok
            total += 1
    assert sizes_ok >= 0.9 * total, f"{sizes_ok}/{total}"


def test_cost_grows_no_faster_than_the_curve():
    """20,000 points (another tool's fine sweep) cost about what 200 do: the plateau search runs
    on 1/16-octave bins, the edge fit is vectorised over every point."""
    import time

    levels = [SimLevel(32 * KiB, 1.0), SimLevel(1 * MiB, 4.0, "random"), SimLevel(32 * MiB, 15.0, "colour")]
    times = {}
    for n in (200, 20_000):
        sizes = np.exp2(np.linspace(np.log2(2 * KiB), np.log2(1 << 30), n))
        lat = latency_curve(levels, 100.0, sizes, noise=0.01, seed=1)
        t0 = time.perf_counter()
        h = infer_levels(sizes, lat)
        times[n] = time.perf_counter() - t0
        assert len(h.caches) == 3
    assert times[20_000] < 10 * times[200] + 1.0, times


def test_sparse_sweep_level_seen_as_one_point_between_two_climbs():
    """One point per octave: an L3 only 3x the L2 shows as a single point between the L2's
    climb and memory's (the Intel N100's published curve). The BIC comparison inserts it; the
    same point on a denser sweep would sit on a plateau the band search finds."""
    sizes = geometric_sizes(4 * KiB, 128 * MiB, 1)
    levels = [SimLevel(32 * KiB, 0.9), SimLevel(2 * MiB, 8.5, "colour", ways=16), SimLevel(6 * MiB, 28.0, "random")]
    h = infer_levels(sizes, latency_curve(levels, 112.0, sizes))
    assert len(h.caches) == 3, [(lv.name, lv.size_bytes, lv.latency) for lv in h.levels]
    lo, hi = h.caches[2].size_range_bytes
    assert lo <= 6 * MiB <= hi


# ---- real one-point-per-octave curves (sbc-bench ramlat, 1xPTR, 4 KiB pages) -----------------
# tests/data/sbcbench_redwood_cove_1xptr.csv: ThomasKaiser/sbc-bench results/XRRi.txt @e25a677,
# cpu0 (Redwood Cove, Core Ultra 9 185H: L1d 48 KiB, L2 2 MiB, L3 24 MiB);
# tests/data/sbcbench_n100_1xptr.csv: results/4vxM.txt @e25a677, cpu0 (N100: 32 KiB, 2 MiB, 6 MiB).
def _read(name):
    from pathlib import Path

    from memprobe.infer.curves import read_curve_file

    c = read_curve_file(Path(__file__).parent / "data" / name)
    return infer_levels(c.size_bytes, c.latency, c.unit)


def _holds(lv, size):
    lo, hi = lv.size_range_bytes
    return lo <= size <= hi and hi <= 2 * lo + 1


def test_redwood_cove_p_core_reads_every_level():
    """Issue 26: this curve (flat 1.05 ns to 32 KiB, plateaus near 3.3, 4.8, 16-21 and 125 ns)
    read as one 'L1 36.4 MiB' with 438 % spread: the median neighbour difference was a step."""
    from memprobe.result import Code

    h = _read("sbcbench_redwood_cove_1xptr.csv")
    c = h.caches
    assert _holds(c[0], 48 * KiB)
    assert any(code == Code.CACHE_OR_TLB for code, _ in c[1].notes)  # 3.3 -> 4.8 ns at 256-512 KiB
    assert _holds(c[2], 2 * MiB) and _holds(c[3], 24 * MiB)
    assert len(c) == 4 and all(lv.spread < 0.15 for lv in h.levels)


def test_n100_l2_is_not_merged_with_its_tlb_step():
    """Issue 26: the N100's 2 MiB L2 merged with the TLB step at 256 KiB read 'L2 899 KiB'."""
    from memprobe.result import Code

    c = _read("sbcbench_n100_1xptr.csv").caches
    assert [code for code, _ in c[1].notes] == [Code.CACHE_OR_TLB] and c[1].size_bytes == 128 * KiB
    assert _holds(c[2], 2 * MiB) and _holds(c[3], 6 * MiB) and len(c) == 4


# tests/data/sbcbench_i3n305_1xptr_to_16m.csv: ThomasKaiser/sbc-bench results/4qpr.txt @dc6d157,
# cpu0 (i3-N305, Gracemont: L1d 32 KiB, L2 2 MiB, L3 6 MiB), a run that stops at 16 MiB;
# tests/data/sbcbench_crestmont_1xptr.csv: results/XRRi.txt @9cfe968, cpu12 (Crestmont: 32 KiB,
# 2 MiB, 24 MiB), whose memory latency still climbs (115, 177, 234 ns) at 32-128 MiB. Both copied
# unchanged from benchmarks/data/published (sources.json there).
def test_a_level_seen_as_one_point_before_a_curve_that_ends_short_of_memory():
    """The i3-N305's L3 shows as one point (4 MiB, 21.7 ns) between its L2's 7.65 ns and the
    last point (16 MiB, 105 ns), and memory is never reached. The last point stands for the next
    level, as the same machine's full curve (4EcO: 4 MiB 20.8 ns, then memory) reads it: L2 and
    L3 both, where the L2 merged with the L3 into one '7.66 MiB' level."""
    c = _read("sbcbench_i3n305_1xptr_to_16m.csv").caches
    assert len(c) == 4  # L1, the 128 KiB TLB step, L2, L3
    assert _holds(c[2], 2 * MiB)
    # the curve ends before the L3's climb is half-way to its last point: the interval runs to it
    assert c[3].size_range_bytes[0] <= 6 * MiB <= c[3].size_range_bytes[1]


def test_memory_still_climbing_through_page_walks_is_not_a_level():
    """Crestmont's curve ends still climbing (32 MiB 115 ns, 64 MiB 177, 128 MiB 234): the 32 MiB
    point's step on to the last point is under half its step up from the L3, a creep of one
    climb, so it is not read as a level of its own before the curve's end."""
    c = _read("sbcbench_crestmont_1xptr.csv").caches
    assert len(c) == 4
    assert c[3].size_bytes == pytest.approx(24 * MiB, rel=0.25)


def test_a_curve_that_ends_inside_a_climb_bounds_the_capacity_by_its_last_point():
    """One point per octave, stopped at 16 MiB inside the last cache's climb: the next level's
    latency is only known to be at least the last point's, and no point before it is half-way
    there, so the interval runs to the last point (a page-coloured 12 MiB cache: its 8 MiB point
    is already off the level, and the octave below it, the rule for a climb that starts at C,
    would miss it)."""
    levels, mem = [SimLevel(128 * KiB, 0.9), SimLevel(12 * MiB, 5.5, "colour", ways=16)], 95.0
    sizes = geometric_sizes(4 * KiB, 16 * MiB, 1)
    h = infer_levels(sizes, latency_curve(levels, mem, sizes))
    assert not h.memory_reached and len(h.caches) == 2
    lo, hi = h.caches[1].size_range_bytes
    assert lo <= 12 * MiB <= hi


def test_m1_pro_l2_from_a_run_that_stops_at_16_mib():
    """tests/data/published_m1pro_firestorm.csv, copied unchanged from /work/shared/curves
    (ThomasKaiser/sbc-bench results/443N.txt @718441c, ramlat on cpu2, 1xPTR, 16 KiB pages):
    L1d 128 KiB, L2 12 MiB; 4 MiB 7.9 ns, 8 MiB 22 ns, 16 MiB 91 ns, and no memory plateau.
    The L2 read 6.5-8 MiB (the octave below the first point off the level)."""
    c = _read("published_m1pro_firestorm.csv").caches
    assert len(c) == 2 and _holds(c[0], 128 * KiB)
    lo, hi = c[1].size_range_bytes
    assert lo <= 12 * MiB <= hi and c[1].size_bytes == pytest.approx(12 * MiB, rel=0.25)


# ---- a step the same core's huge-page run lacks is a TLB's reach (levels._tlb_steps) ----------
# tests/data/sbcbench_*_pages.csv: tinymembench's random read on the ramlat table's core, with
# 4 KiB pages (small_ns) and with huge pages (huge_ns), from the same sbc-bench file:
# n100: results/4vxM.txt; j4125 (Celeron J4125, Goldmont Plus: L1d 24 KiB, L2 4 MiB) with its
# ramlat curve: results/4hau.txt; zen5 (Ryzen AI Max+ 395: L1d 48 KiB, L2 1 MiB, L3 32 MiB)
# with its curve: results/8hUb.txt (benchmarks/published_build.py wrote them).
def _read_paged(curve, pages):
    from pathlib import Path

    from memprobe.infer import sbcbench
    from memprobe.infer.curves import read_curve_file

    data = Path(__file__).parent / "data"
    c = read_curve_file(data / curve)
    return infer_levels(c.size_bytes, c.latency, c.unit, pages=sbcbench.read_page_pair(data / pages))


def test_a_step_the_huge_page_run_lacks_folds_into_the_cache():
    """N100: the 5.9 -> 8.6 ns step at 128-256 KiB rises 3.4 ns to 1 MiB with 4 KiB pages and
    1.2 ns with huge pages: a TLB's reach. One 2 MiB L2, at the latency before the step."""
    from memprobe.result import Code

    c = _read_paged("sbcbench_n100_1xptr.csv", "sbcbench_n100_pages.csv").caches
    assert len(c) == 3 and [lv.name for lv in c] == ["L1", "L2", "L3"]
    assert _holds(c[0], 32 * KiB) and _holds(c[1], 2 * MiB) and _holds(c[2], 6 * MiB)
    assert [code for code, _ in c[1].notes] == [Code.TLB_STEP] and c[1].latency == pytest.approx(5.9, abs=0.1)
    assert c[1].plateau_bytes == (64 * KiB, 1 * MiB)


def test_a_step_of_two_times_the_huge_page_run_lacks_folds_too():
    """Zen 5: the 2.8 -> 5.6 ns step at 256-512 KiB (2x, no small step) is 2.2 ns with 4 KiB
    pages and 0.5 ns with huge pages; the 1 MiB L2 and 32 MiB L3 stay."""
    c = _read_paged("sbcbench_zen5_1xptr.csv", "sbcbench_zen5_pages.csv").caches
    assert len(c) == 3
    assert c[1].size_range_bytes[0] <= 1 * MiB <= c[1].size_range_bytes[1] and _holds(c[2], 32 * MiB)


def test_a_step_the_huge_page_run_keeps_stays_a_level():
    """Celeron J4125: the 128-256 KiB step rises as much with huge pages as with 4 KiB pages
    (a cache, or a TLB that holds huge pages as 4 KiB entries): it stays, still saying it may be
    either; and with no page pair the N100 keeps its step as well."""
    from memprobe.result import Code

    c = _read_paged("sbcbench_j4125_1xptr.csv", "sbcbench_j4125_pages.csv").caches
    assert len(c) == 3 and [code for code, _ in c[1].notes] == [Code.CACHE_OR_TLB]
    assert "huge-page run keeps the step" in c[1].notes[0][1]
    assert all(code != Code.TLB_STEP for lv in c for code, _ in lv.notes)
    assert len(_read("sbcbench_n100_1xptr.csv").caches) == 4
