"""The sharing judgement (infer/sharing.py): shared, private, or undetermined when the sets
still fit the level's largest possible capacity or the ratio sits in the noise."""

from memprobe.infer.sharing import SHARED_RATIO, judge_sharing

MiB = 1 << 20


def test_a_level_that_overflows_under_load_is_shared():
    got = judge_sharing([10.0, 10.2, 10.1], [31.0, 30.0], int(0.7 * 4 * MiB), 2, 5 * MiB)
    assert got.verdict == "shared" and got.ratio == 3.0


def test_a_level_that_keeps_its_latency_is_private():
    got = judge_sharing([10.0, 10.1, 10.2], [10.3, 10.4], int(0.7 * 4 * MiB), 2, 5 * MiB)
    assert got.verdict == "private"


def test_sets_that_fit_the_largest_capacity_leave_it_undetermined():
    # the level's interval reaches 9 MiB: two sets of 2.8 MiB fit even if it is shared
    got = judge_sharing([10.0, 10.1, 10.2], [10.3, 10.4], int(0.7 * 4 * MiB), 2, 9 * MiB)
    assert got.verdict == "undetermined" and "fit" in got.why


def test_a_ratio_in_the_noise_of_the_threshold_is_undetermined():
    alone = [10.0, 11.0, 12.0, 12.5]
    got = judge_sharing(alone, [10.0 * SHARED_RATIO], 3 * MiB, 2, 4 * MiB)
    assert got.verdict == "undetermined"


def test_faster_under_load_than_alone_is_undetermined():
    got = judge_sharing([30.0, 31.0, 30.5], [9.0, 9.5], 3 * MiB, 2, 4 * MiB)
    assert got.verdict == "undetermined" and "disturbed" in got.why


# ---- capacity alone against capacity under load -------------------------------------------------
import pytest  # noqa: E402
from hierarchy_sim import SimLevel, geometric_sizes, latency_curve  # noqa: E402

from memprobe.infer.sharing import judge_sharing_by_capacity  # noqa: E402


def _sweep(capacity: int, loaded_capacity: int, edge: str = "colour", noise: float = 0.01, seed: int = 1):
    """Latency across a 1 MiB level's edge (L2 5 ns, next level 20 ns), from a quarter to twice
    its capacity at 4 points per octave: alone, and with the capacity a unit keeps under load."""
    sizes = [int(s) for s in geometric_sizes(capacity // 4, capacity * 2, 4)]
    alone = latency_curve([SimLevel(capacity, 5.0, edge)], 20.0, sizes, noise=noise, seed=seed)
    loaded = latency_curve([SimLevel(loaded_capacity, 5.2, edge)], 20.0, sizes, noise=noise, seed=seed + 1)
    return sizes, list(alone), list(loaded)


@pytest.mark.parametrize("edge", ["sharp", "colour", "random"])
def test_capacity_kept_under_load_is_private(edge):
    sizes, alone, loaded = _sweep(MiB, MiB, edge)
    got = judge_sharing_by_capacity(sizes, alone, loaded, units=2, next_latency=20.0)
    assert got.verdict == "private", got
    assert got.capacity_alone_bytes == pytest.approx(MiB, rel=0.3)


@pytest.mark.parametrize("edge", ["sharp", "colour", "random"])
def test_capacity_halved_under_load_is_shared(edge):
    sizes, alone, loaded = _sweep(MiB, MiB // 2, edge)
    got = judge_sharing_by_capacity(sizes, alone, loaded, units=2, next_latency=20.0)
    assert got.verdict == "shared", got
    assert got.capacity_loaded_bytes == pytest.approx(MiB // 2, rel=0.3)
    assert got.shared_share_bytes == got.capacity_alone_bytes // 2


def test_a_change_inside_the_intervals_is_undetermined():
    """Under load the edge moved by a fifth: less than a shared level loses (half), more than
    noise; the intervals of a 4-point-per-octave sweep at 4 % noise cannot call it either way."""
    sizes, alone, loaded = _sweep(MiB, int(MiB * 0.7), "colour", noise=0.04, seed=5)
    got = judge_sharing_by_capacity(sizes, alone, loaded, units=2, next_latency=20.0, sigma=0.04)
    assert got.verdict == "undetermined", got


def test_no_edge_under_load_is_undetermined():
    sizes, alone, _ = _sweep(MiB, MiB)
    flat = [20.0] * len(sizes)  # lifted to the next level all along
    got = judge_sharing_by_capacity(sizes, alone, flat, units=2, next_latency=20.0)
    assert got.verdict == "undetermined" and got.capacity_loaded_bytes is None
