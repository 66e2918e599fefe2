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
