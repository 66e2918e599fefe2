"""memprobe/spread.py: the samples each figure is read from, on real scans (tests/data), and the
second round at the end of the scan joining them."""

import copy
from pathlib import Path

import pytest

from memprobe import spread as S
from memprobe.result import ScanResult

DATA = Path(__file__).parent / "data"


def _scan() -> ScanResult:
    return ScanResult.load(DATA / "scan_honest_1.json")


def _memory(dev):
    return next(lv for lv in dev.levels if not lv.size_bytes)


def test_memory_samples_are_its_stream_point_and_the_second_round():
    dev = _scan().devices["cpu"]
    mem = _memory(dev)
    setup = dev.bandwidth.setup(mem.name)
    setup.samples_recheck = None
    first = S.bandwidth_samples(dev, mem, "triad", "threads_all")
    assert first and first == list(S.memory_point(dev, "triad", "threads_all").samples)
    # a second round 40 % slower, as a neighbour on the memory bus makes it: the spread holds it
    slow = [0.6 * max(first)] * 2
    setup.samples_recheck = {"triad": {"threads_all": slow}}
    both = S.bandwidth_samples(dev, mem, "triad", "threads_all")
    assert both == first + slow
    assert S.bandwidth_spread(dev, mem, "triad", "threads_all") == pytest.approx(max(first) - min(slow))
    # other kernels and thread counts keep their own samples
    assert S.bandwidth_samples(dev, mem, "triad", "threads_1") == list(S.memory_point(dev, "triad", "threads_1").samples)


def test_a_cache_figure_reads_its_second_round_too():
    dev = _scan().devices["cpu"]
    l1 = dev.levels[0]
    setup = dev.bandwidth.setup(l1.name)
    setup.samples_recheck = None
    first = S.bandwidth_samples(dev, l1, "write", "threads_all")
    assert first
    setup.samples_recheck = {"write": {"threads_all": [1.0]}}
    assert S.bandwidth_samples(dev, l1, "write", "threads_all") == first + [1.0]


def test_scaling_memory_scales_both_rounds():
    dev = copy.deepcopy(_scan().devices["cpu"])
    mem = _memory(dev)
    setup = dev.bandwidth.setup(mem.name)
    setup.samples_recheck = {"copy": {"threads_1": [10.0, 12.0], "threads_all": [20.0]}}
    before = S.bandwidth_samples(dev, mem, "copy", "threads_1")
    S.scale_memory_bandwidth(dev, 2.0)
    assert S.bandwidth_samples(dev, mem, "copy", "threads_1") == pytest.approx([2 * x for x in before])
    assert setup.samples_recheck["copy"]["threads_all"] == [40.0]


def test_the_recheck_stage_counts_as_a_bandwidth_stage_for_busy_neighbours():
    assert "bandwidth_recheck" in S.BANDWIDTH_STAGES


def test_a_figure_with_tight_samples_takes_its_levels_widest_relative_range():
    """The level's kernels share its ports and, for memory, the bus: a tight figure beside a
    kernel whose rounds moved 30 % gets 30 % of itself as its spread; the widest own range
    stays its own."""
    dev = _scan().devices["cpu"]
    mem = _memory(dev)
    setup = dev.bandwidth.setup(mem.name)
    kernels = [k for k, per in mem.bandwidth_gbs.items() if per.get("threads_all") is not None]
    fig = {k: mem.bandwidth_gbs[k]["threads_all"] for k in kernels}
    setup.samples_recheck = {k: {"threads_all": [fig[k]] * 3} for k in kernels}
    for p in dev.curves:  # every first-round sample at memory's point: the figure itself
        if p.name.startswith("bandwidth_") and p.name.endswith("threads_all"):
            pt = S.memory_point(dev, p.params["kernel"], "threads_all")
            pt.samples = [fig[p.params["kernel"]]] * len(pt.samples)
    assert all(S.bandwidth_spread(dev, mem, k, "threads_all") == 0 for k in kernels)
    wide = kernels[0]
    setup.samples_recheck[wide]["threads_all"] = [0.7 * fig[wide]]
    assert S.bandwidth_spread(dev, mem, wide, "threads_all") == pytest.approx(0.3 * fig[wide])
    for k in kernels[1:]:
        assert S.bandwidth_spread(dev, mem, k, "threads_all") == pytest.approx(0.3 * fig[k])
    # one thread kept its own (tight) samples
    assert S.bandwidth_spread(dev, mem, wide, "threads_1") == S.sample_range(S.bandwidth_samples(dev, mem, wide, "threads_1"))


def test_a_shared_levels_all_thread_range_between_two_points_reads_its_own_set():
    """A shared level whose all-thread range (each thread's part past the level before, the
    whole set inside the level) holds no point of the curve: its figure was read from nothing
    in the first round. It reads the point of the level's own all-thread set instead."""
    dev = _scan().devices["cpu"]
    lv = next(lv for lv in dev.levels if lv.size_bytes and lv.sharing != "private" and dev.bandwidth.setup(lv.name))
    setup = dev.bandwidth.setup(lv.name)
    setup.samples_threads_all_off_curve = None
    curve = dev.curve("bandwidth_read_threads_all")
    xs = sorted(p.x for p in curve.points)
    a, b = next((x, y) for x, y in zip(xs, xs[1:]) if y > x * 1.2)  # two neighbouring points
    n = setup.threads_all
    setup.size_range_bytes = [int(a * 1.05 / n), int(b / 1.05)]  # all threads: between a and b
    got = S._first_round(dev, lv, setup, "read", "threads_all")
    assert got and got == S._nearest(curve, setup.size_bytes_threads_all)
