"""The ceiling stages on a fake DeviceResult with three levels, at tiny sizes: every level gets
bandwidth for every kernel at one and all threads; compute, loaded latency and sharing filled."""

import json

import pytest

import dataclasses

from memprobe.result import BANDWIDTH_KERNELS, THREAD_KEYS, Declared, DeclaredCache, DeviceResult, Level, ScanResult
from memprobe.scan import ScanContext, ScanOptions, run_stages
from memprobe.scan import ceilings
from memprobe.profile import resolve_profile


def _device():
    return DeviceResult(
        kind="cpu", name="fake", clock_ghz=3.0, line_size_bytes=64,
        levels=[Level("L1", 32 << 10, 1.0, 3.0), Level("L2", 256 << 10, 4.0, 12.0),
                Level("memory", None, 90.0, 270.0)],
        declared=Declared(fma_flops_per_cycle={"float64": 16, "float32": 32},
                          caches=[DeclaredCache(1, "Data", 32 << 10, shared_cpu_list="0"),
                                  DeclaredCache(2, "Unified", 256 << 10, shared_cpu_list="0")]),
    )


def test_level_sizes_centred():
    levels = _device().levels
    s = ceilings.level_sizes_bytes(levels)
    assert s["L1"] == 16 << 10
    assert (32 << 10) < s["L2"] < (256 << 10)
    assert s["memory"] >= ceilings.MEMORY_MIN_BYTES


def test_ceiling_stages_fill_every_level(monkeypatch):
    monkeypatch.setattr(ceilings, "MEMORY_MIN_BYTES", 2 << 20)
    monkeypatch.setattr(ceilings, "STREAM_ARRAY_MIN_BYTES", 256 << 10)
    dev = _device()
    res = ScanResult(host="t", started_at="now", devices={"cpu": dev})
    seen = []
    plan = dataclasses.replace(resolve_profile("quick", repetitions=2).cpu, gemm_sizes=(64,))
    ctx = ScanContext(options=ScanOptions(quick=False, repetitions=2), device=dev,  # (quick=False: every stage, loaded latency too)
                      progress=lambda *a: seen.append(a[0]), result=res, plan=plan)
    assert run_stages(ceilings.CPU_CEILING_STAGES, ctx), dev.warnings
    for lv in dev.levels:
        for k in BANDWIDTH_KERNELS:
            for t in THREAD_KEYS:
                assert lv.bandwidth_gbs[k][t] > 0, (lv.name, k, t)
    names = {c.name for c in dev.curves}
    assert {f"bandwidth_{k}_{t}" for k in BANDWIDTH_KERNELS for t in THREAD_KEYS} <= names
    c = dev.curve("bandwidth_triad_threads_1")
    assert c.points[0].x <= 16 << 10 and c.points[-1].x >= 3 << 20
    # streaming (non-temporal) stores: measured at memory's working set only, one point each
    for k in ("write_nt", "copy_nt", "triad_nt"):
        for t in THREAD_KEYS:
            assert dev.levels[-1].bandwidth_gbs[k][t] > 0, (k, t)
            c = dev.curve(f"bandwidth_{k}_{t}")
            # STREAM's rule: each array 4x the largest cache (the declared 256 KiB L2 here)
            arrays = {"write_nt": 1, "copy_nt": 2, "triad_nt": 3}[k]
            assert [p.x for p in c.points] == [arrays * 4 * (256 << 10)]
            assert c.params["stores"] == "streaming" and c.params["base_kernel"] == k[:-3]
        assert all(k not in lv.bandwidth_gbs for lv in dev.levels[:-1])
    for dt in ("float32", "float64"):
        assert dev.compute.fma[dt]["threads_1"] > 0
    assert dev.compute.gemm and dev.compute.gemm[0].library and dev.compute.statistic == "best"
    th = dev.compute.theoretical
    assert th.gflops["float64"] == pytest.approx(3.0 * th.units * 16)
    assert dev.loaded_latency[0].streaming_threads == 0
    assert all(p.latency_ns > 0 for p in dev.loaded_latency)
    sharing = dev.extra.sharing
    assert sharing["L1"].declared_shared_cpu_list == "0"
    for lv in dev.levels[:-1]:
        if sharing[lv.name].other_units:
            assert lv.sharing in ("private", "shared", "undetermined") and sharing[lv.name].verdict == lv.sharing
    assert dev.bandwidth.statistic == "best" and [s.level for s in dev.bandwidth.levels] == ["L1", "L2", "memory"]
    assert dev.bandwidth.levels[-1].array_bytes == 4 * (256 << 10)
    # a second round at the end of the scan, every level, kernel and thread count: its samples
    # join the figure's, and the figure is the best of both rounds
    for su, lv in zip(dev.bandwidth.levels, dev.levels):
        for k, per in lv.bandwidth_gbs.items():
            assert set(su.samples_recheck[k]) == set(THREAD_KEYS), (lv.name, k)
            for t, v in per.items():
                assert v >= max(su.samples_recheck[k][t]), (lv.name, k, t)
                assert all(x > 0 for x in su.samples_recheck[k][t])
    # a cache's roof: the best sample at any size of the curve inside the level, its centre
    # included, or of the second round
    for su, lv in zip(dev.bandwidth.levels[:-1], dev.levels[:-1]):
        lo, hi = su.size_range_bytes
        assert lo <= su.size_bytes_threads_1 <= hi
        pooled = [x for p in dev.curve("bandwidth_read_threads_1").points if lo <= p.x <= hi for x in p.samples]
        assert lv.bandwidth_gbs["read"]["threads_1"] == max(pooled + su.samples_recheck["read"]["threads_1"])
        if not su.samples_threads_all_off_curve:  # all threads on the curve: its x is every set together
            n = su.threads_all
            lo_all, hi_all = lo * n, (hi * n if lv.sharing == "private" else hi)
            pts = dev.curve("bandwidth_read_threads_all").points
            pooled = [x for p in pts if lo_all <= p.x <= hi_all for x in p.samples] if lo_all <= hi_all else []
            # no point in that range: the level's own all-thread set, a point of the sweep
            pooled = pooled or [x for p in pts if p.x == su.size_bytes_threads_all for x in p.samples]
            assert pooled, lv.name
            assert lv.bandwidth_gbs["read"]["threads_all"] == max(pooled + su.samples_recheck["read"]["threads_all"])
    assert {"sharing", "bandwidth", "compute", "loaded_latency", "bandwidth_recheck"} <= set(seen)
    # the whole thing still round-trips through JSON
    back = ScanResult.from_json(res.to_json())
    assert back.devices["cpu"].levels[0].bandwidth_gbs.keys() == dev.levels[0].bandwidth_gbs.keys()
    json.loads(res.to_json())
