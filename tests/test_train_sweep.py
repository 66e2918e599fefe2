"""The sweep plans widths from the scan's capacities; the stage writes its contract or a
warning; summaries and speed-up pairing."""

from __future__ import annotations

import pytest

from memprobe.result import DeviceResult, Level, ScanResult
from memprobe.train import model as M
from memprobe.train import sweep as S
from memprobe.train.network import NetShape

CAPS = [("L1", 32 << 10), ("L2", 512 << 10), ("L3", 8 << 20)]


@pytest.mark.parametrize("batch", [1, 16, 256])
def test_widths_straddle_each_capacity(batch):
    pts = [p for p in S.plan_points(CAPS, batches=(batch,)) if p.level != "overhead"]
    for name, cap in CAPS:
        ws = [p.working_set_bytes for p in S.plan_points(CAPS, batches=(batch,))]
        if batch == 256 and name == "L1":
            continue  # 256 rows of activations alone outgrow L1: no width fits
        assert min(ws) < cap < max(ws)
    for p in pts:
        assert p.working_set_bytes == M.working_set_bytes(NetShape.square(p.width, p.layers, batch))
        assert p.width % S.WIDTH_ALIGN == 0


def test_multiples_land_near_targets():
    pts = S.plan_points([("L2", 1 << 20)], batches=(16,))
    got = sorted(p.capacity_multiple for p in pts if p.level == "L2")
    assert len(got) == len(S.SWEEP_MULTIPLES)
    for want, g in zip(S.SWEEP_MULTIPLES, got):
        assert g == pytest.approx(want, rel=0.3)
    assert any(p.level == "overhead" and p.width == S.OVERHEAD_WIDTH for p in pts)


def test_memory_cap_drops_big_points():
    pts = S.plan_points(CAPS, batches=(1,), max_working_set_bytes=4 << 20)
    assert max(p.working_set_bytes for p in pts) <= 6 << 20


def test_width_for_working_set_is_monotone():
    ws = [S.width_for_working_set(t, 3, 16) for t in (1e5, 1e6, 1e7, 1e8)]
    assert ws == sorted(ws) and len(set(ws)) == 4


def _device(bw=True):
    def lv(name, size):
        bwd = {k: {"threads_1": 20.0, "threads_all": 30.0} for k in ("read", "write", "copy", "triad")} if bw else {}
        return Level(name, size, 1.0, 4.0, bwd)
    return DeviceResult("cpu", "test", levels=[lv("L1", 32 << 10), lv("L2", 256 << 10), lv("memory", None)])


def test_scan_stage_without_bandwidth_warns_and_keeps_going():
    from memprobe.scan.training import scan_training

    res = ScanResult(host="h", started_at="t", devices={"cpu": _device(bw=False)})
    assert scan_training(object(), lambda *a: None, res) is True
    assert res.training["points"] == []
    assert any("bandwidth" in w for w in res.warnings)


def test_study_end_to_end_tiny_budget():
    from memprobe.scan.training import run_training_study

    res = ScanResult(host="h", started_at="t", devices={"cpu": _device()})
    tr = run_training_study(res, "cpu", quick=True, budget_s=0.5, mnist=False)
    assert tr["points"], tr["skipped"]
    p = tr["points"][0]
    for key in ("device", "level", "capacity_multiple", "width", "layers", "batch", "threads", "working_set_bytes",
                "flops", "bytes", "measured_s", "measured_spread", "predicted_s", "predicted_max_s",
                "predicted_sum_s", "error", "achieved_fraction", "bound"):
        assert key in p
    assert p["bound"] in ("compute", "memory", "overhead")
    assert p["error"] == pytest.approx((p["predicted_s"] - p["measured_s"]) / p["measured_s"])
    assert "median_abs_error_all" in tr["summary"] and "gemm_rates" in tr and "overhead_s" in tr
    # the whole thing round-trips through the scan's JSON
    assert ScanResult.from_json(res.to_json()).training["points"][0]["width"] == p["width"]


def test_summary_and_speedup_pairing():
    pts = [{"device": "cpu", "batch": 16, "level": "L2", "bound": "compute", "error": e, "error_max": 0.5,
            "error_sum": 0.2, "width": 64, "threads": "threads_all", "measured_s": 1.0} for e in (-0.1, 0.2, 0.05)]
    s = S.summarize(pts)
    assert s["median_abs_error_batch_ge16"] == pytest.approx(0.1)
    gpu = [{"width": 64, "batch": 16, "measured_s": 0.25}]
    sp = S.pair_speedups(pts, gpu)
    assert sp[0]["speedup"] == pytest.approx(4.0)
    assert S.gpu_wins_from(sp) == {"16": 64}
    claims = S.judge_claims(None, None, sp)
    assert "outside" in claims[0]["finding"]
