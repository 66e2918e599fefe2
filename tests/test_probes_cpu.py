"""CPU probes at tiny sizes: the chase visits every slot in one cycle, timings are positive,
the clock and line probes return plausible raw samples. No timing assertions."""

import pytest

from memprobe.probes.cpu.chase import ChaseProbe, clock_samples, region_cycle, sattolo_cycle
from memprobe.probes.cpu.line import FalseSharingProbe, StrideProbe


@pytest.mark.parametrize("n", [2, 3, 17, 1000])
def test_sattolo_is_one_cycle(n):
    p = sattolo_cycle(n, 7)
    assert sorted(p.tolist()) == list(range(n))
    i, seen = 0, set()
    for _ in range(n):
        seen.add(i)
        i = int(p[i])
    assert i == 0 and len(seen) == n


@pytest.mark.parametrize("n,per", [(2, 2), (17, 4), (1000, 64), (1024, 64), (50, 100)])
def test_region_cycle_is_one_cycle_visiting_regions_whole(n, per):
    succ = region_cycle(n, per, 3)
    i, order = 0, []
    for _ in range(n):
        order.append(i)
        i = int(succ[i])
    assert i == 0 and sorted(order) == list(range(n))
    # around the cycle the walk enters each region once and stays until it has seen all of it
    regions = [k // per for k in order]
    changes = sum(regions[k] != regions[(k + 1) % n] for k in range(n))
    n_regions = -(-n // per)
    assert changes == (n_regions if n_regions > 1 else 0)


def test_page_local_chase_smoke():
    probe = ChaseProbe(page_kind="huge", region_bytes=4096)
    probe.setup(64 << 10)
    assert probe.verify()
    t = probe.run(2, min_hops=4096, target_ns=2e5)
    probe.close()
    assert len(t) == 2 and all(0 < v < 1e4 for v in t)


@pytest.mark.parametrize("page_kind,slot", [("huge", 64), ("4k", 64), ("huge", 128)])
def test_chase_smoke(page_kind, slot):
    probe = ChaseProbe(slot_bytes=slot, page_kind=page_kind)
    probe.setup(16 << 10)
    assert probe.verify()
    t = probe.run(2, min_hops=4096, target_ns=2e5)
    probe.close()
    assert len(t) == 2 and all(0 < v < 1e4 for v in t)


def test_clock_is_positive():
    assert all(v > 0.1 for v in clock_samples(2, iters=100_000))


def test_stride_and_false_sharing_smoke():
    sp = StrideProbe(size_bytes=1 << 20)
    assert len(sp.run(64, 1, target_ns=1e5)) == 1
    sp.close()
    if FalseSharingProbe.available():
        fs = FalseSharingProbe(iters=10_000)
        assert all(v > 0 for v in fs.run(8, 2))
        fs.close()
