"""The scan's rate table (memprobe/scan/rates.py, result.RateTable): the typed records round-trip
through JSON and validate against the shipped schema, scans without one still load, the stage
fills every class at every level on a tiny plan, and without PyTorch the table names its
library and what it lacks. Logic only: the timings themselves are not checked."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from memprobe.result import (OVERHEAD_CLASSES, RATE_CLASSES, SCHEMA_FILE, AttentionRate, BandwidthSetup,
                             BandwidthTable, ClassRate, ConvRate, DeviceResult, GemmRate, Level, RateTable, ScanResult,
                             ThreadRates)

DATA = Path(__file__).resolve().parent / "data"
KERNELS = ("read", "write", "copy", "triad")


def hand_table(threads_all: int = 2) -> RateTable:
    """A rate table as a scan would hold it, every figure made up."""
    def tr(n: int) -> ThreadRates:
        return ThreadRates(
            threads=n, call_overhead_s={k: 2e-6 for k in OVERHEAD_CLASSES},
            gemm=[GemmRate(64, 1024, 1024, "float32", 80.0 * n, 1.7e-3), GemmRate(512, 512, 512, "float32", 90.0 * n)],
            bmm=[GemmRate(128, 128, 64, "float32", 50.0 * n, batch=12)],
            conv=[ConvRate(8, 32, 64, 32, 3, 1, d, "float32", 8192, 64, 288, 70.0 * n)
                  for d in ("forward", "backward")],
            attention=[AttentionRate(8, 128, 64, c, d, "float32", 30.0 * n) for c in (True, False)
                       for d in ("forward", "backward")],
            classes={c: [ClassRate("L1", 16 << 10, 1e10 * n, 120.0 * n, 12.0, 3e-6),
                         ClassRate("L2", 512 << 10, 8e9 * n, 96.0 * n, 12.0),
                         ClassRate("memory", 64 << 20, 1e9 * n, 12.0 * n, 12.0)] for c in RATE_CLASSES},
            backward_call_s=1e-5, fault_s_per_byte=1e-10, cross_core_s_per_byte=0.0 if n == 1 else 1e-10,
            update_call_s={"sgd": [1e-5, 5e-6], "adamw": [1e-5, 2e-5]})
    return RateTable(library="torch 2.13.0", threads={"threads_1": tr(1), "threads_all": tr(threads_all)},
                     seconds=1.5)


def device_with_levels(rates: RateTable | None = None) -> DeviceResult:
    """L1 32 KiB, L2 1 MiB (private), memory; every STREAM kernel's bandwidth at both thread counts."""
    def lv(name, size, gbs):
        return Level(name, size, 1.0, 3.0, {k: {"threads_1": gbs, "threads_all": 2 * gbs} for k in KERNELS},
                     sharing="private" if size else None)
    dev = DeviceResult(kind="cpu", name="Test CPU", rates=rates)
    dev.levels = [lv("L1", 32 << 10, 200.0), lv("L2", 1 << 20, 80.0), lv("memory", None, 10.0)]
    dev.bandwidth = BandwidthTable(levels=[BandwidthSetup("L1", 16 << 10, 32 << 10, 2),
                                           BandwidthSetup("L2", 256 << 10, 512 << 10, 2)])
    return dev


def scan_with(rates: RateTable | None) -> ScanResult:
    return ScanResult(host="there", started_at="2026-01-01T00:00:00+00:00", complete=True,
                      devices={"cpu": device_with_levels(rates)})


def test_the_rate_table_round_trips_through_json():
    r = scan_with(hand_table())
    again = ScanResult.from_json(r.to_json())
    assert again == r
    t = json.loads(r.to_json())["cpu"]["rates"]
    assert set(t["threads"]) == {"threads_1", "threads_all"}
    assert t["threads"]["threads_1"]["gemm"][0] == {"m": 64, "n": 1024, "k": 1024, "dtype": "float32",
                                                    "gflops": 80.0, "call_s": 1.7e-3, "batch": 1}
    assert [row["level"] for row in t["threads"]["threads_all"]["classes"]["softmax"]] == ["L1", "L2", "memory"]


def test_a_scan_with_a_rate_table_validates_against_the_shipped_schema():
    jsonschema = pytest.importorskip("jsonschema", reason="the test extra's jsonschema validates scan.json")
    v = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    errors = list(v.iter_errors(json.loads(scan_with(hand_table()).to_json())))
    assert not errors, errors[0].message


def test_scans_from_before_rate_tables_still_load():
    old = ScanResult.load(DATA / "scan_small.json")
    assert old.devices["cpu"].rates is None
    d = json.loads(scan_with(None).to_json())
    assert d["cpu"]["rates"] is None
    del d["cpu"]["rates"]  # an older memprobe/2 file has no key at all
    assert ScanResult.from_dict(d).devices["cpu"].rates is None


def test_the_cpu_stages_measure_rates_after_compute():
    from memprobe.scan import cpu

    names = [s.name for s in cpu.CPU_STAGES + cpu._ceiling_stages()]
    assert names.index("rates") == names.index("compute") + 1
    from memprobe.profile import PROFILES

    assert "rates" not in PROFILES["quick"].stages_left_out("cpu")  # the quick scan measures it too
    assert PROFILES["quick"].rates.profile == "quick" and PROFILES["default"].rates.profile == "default"


def test_level_working_sets_follow_the_bandwidth_stage_and_cap_memory():
    from memprobe.scan import rates as SR

    dev = device_with_levels()
    assert SR.level_working_sets(dev, "threads_1") == [("L1", 16 << 10), ("L2", 256 << 10),
                                                       ("memory", SR.MEMORY_RATE_MIN_BYTES)]
    assert SR.level_working_sets(dev, "threads_all", 1 << 20)[:2] == [("L1", 32 << 10), ("L2", 512 << 10)]
    assert SR.level_working_sets(dev, "threads_all", 1 << 20)[2] == ("memory", 1 << 20)


TINY_PLAN = dict(reps=1, batch_s=1e-4, gemm=((8, 8, 8), (16, 32, 8)), bmm=((2, 4, 4, 4),),
                 conv=((1, 2, 2, 4, 3, 1),), attention=((2, 16, 8),), optimizers=("sgd",), memory_max_bytes=1 << 20)


def test_the_stage_fills_every_class_at_every_level_through_pytorch(monkeypatch):
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[torch]')")
    from memprobe.scan import rates as SR

    t = SR.measure_rate_table(device_with_levels(), SR.RatePlan(**TINY_PLAN), threads_all=2)
    assert t.library.startswith("torch ") and t.backend == "cpu" and not t.absent
    assert set(t.threads) == {"threads_1", "threads_all"} and t.threads["threads_all"].threads == 2
    for tr in t.threads.values():
        assert set(tr.call_overhead_s) == set(OVERHEAD_CLASSES) and all(v > 0 for v in tr.call_overhead_s.values())
        assert [(g.m, g.n, g.k) for g in tr.gemm] == [(8, 8, 8), (16, 32, 8)]
        assert tr.bmm[0].batch == 2
        assert {c.direction for c in tr.conv} == {"forward", "backward"}
        conv = tr.conv[0]
        assert (conv.m, conv.n, conv.k) == (1 * 4 * 4, 2, 2 * 9)
        assert {(a.direction, a.causal) for a in tr.attention} == {(d, c) for d in ("forward", "backward")
                                                                   for c in (True, False)}
        assert all(a.gflops and (a.batch, a.seq, a.head_dim) == (2, 16, 8) for a in tr.attention)
        assert set(tr.classes) == set(RATE_CLASSES)
        assert set(tr.operators) == set(SR.TRANSCENDENTAL_OPERATORS)
        for rows in [*tr.classes.values(), *tr.operators.values()]:
            assert [r.level for r in rows] == ["L1", "L2", "memory"]
            assert all(r.elements_per_s and r.gbs for r in rows)
        assert set(tr.update_call_s) == {"sgd"} and tr.backward_call_s is not None
    assert ScanResult.from_json(scan_with(t).to_json()).devices["cpu"].rates == t


def test_a_class_whose_kernel_fails_is_left_out_and_named(monkeypatch):
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[torch]')")
    from memprobe.scan import rates as SR

    def broken(n_bytes, pool):
        raise RuntimeError("no such operator here\nsecond line")

    kernels = tuple(dataclasses.replace(k, build=broken, tiny=lambda pool: broken(0, pool)) if k.klass == "norm"
                    else k for k in SR.CLASS_KERNELS)
    monkeypatch.setattr(SR, "CLASS_KERNELS", kernels)
    t = SR.measure_rate_table(device_with_levels(), SR.RatePlan(**dict(TINY_PLAN, gemm=((8, 8, 8),), optimizers=())),
                              threads_all=2)
    assert "norm" not in t.threads["threads_1"].classes and "softmax" in t.threads["threads_1"].classes
    assert t.threads["threads_1"].call_overhead_s["norm"] is None
    assert t.absent == [f"norm: its kernel (layer norm, rows of 1024) failed: RuntimeError: no such operator here ({k})"
                        for k in ("threads_1", "threads_all")]


def test_without_pytorch_the_gemm_ladder_comes_through_numpy_and_the_rest_is_named_absent(monkeypatch):
    from memprobe.scan import rates as SR

    plan = SR.RatePlan(**TINY_PLAN)
    monkeypatch.setattr(SR, "torch_library", lambda: None)
    t = SR.measure_rate_table(device_with_levels(), plan, threads_all=2)
    assert t.library.startswith("numpy/")
    assert t.absent == [SR.NO_TORCH] and "without PyTorch" in t.absent[0]
    tr = t.threads["threads_1"]
    assert tr.gemm and tr.bmm and not tr.conv and not tr.classes
    assert dataclasses.asdict(tr)["backward_call_s"] is None


def test_the_timer_takes_the_median_batch_and_takes_faults_out(monkeypatch):
    from memprobe.scan import rates as SR

    calls = []
    assert SR.time_call(lambda: calls.append(1), reps=3, batch_s=1e-4) < 1e-3
    assert len(calls) >= 4
    assert SR.work_rate(100.0, 2.0, 1.0) == 100.0
    assert SR.work_rate(100.0, 1.0, 0.99) == pytest.approx(1000.0)  # a tenth of the call at least
    assert SR.work_rate(0.0, 1.0, 0.5) is None


def test_the_products_second_round_keeps_each_entrys_faster_figure():
    """The all-thread ladders again at the scan's end: an entry whose first round ran slow (here
    doctored to 1e-6 GFLOP/s, as a host that gave both vCPUs one core's share for a second would
    leave it) takes the second round's figure; one the second round cannot beat keeps its own.
    One thread's ladder is not repeated."""
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[torch]')")
    from memprobe.profile import resolve_profile
    from memprobe.scan import ScanContext, ScanOptions
    from memprobe.scan import rates as SR

    plan = SR.RatePlan(**TINY_PLAN)
    dev = device_with_levels()
    dev.rates = SR.measure_rate_table(dev, plan, threads_all=2)
    tr, one = dev.rates.threads["threads_all"], dev.rates.threads["threads_1"]
    tr.gemm[0] = dataclasses.replace(tr.gemm[0], gflops=1e-6)
    tr.gemm[1] = dataclasses.replace(tr.gemm[1], gflops=1e9)
    before_one = copy.deepcopy(one)
    profile = dataclasses.replace(resolve_profile("quick"), rates=plan)
    ctx = ScanContext(options=ScanOptions(quick=True), device=dev, progress=lambda *a: None,
                      result=scan_with(dev.rates), plan=profile.cpu, profile=profile)
    SR.stage_rates_recheck(ctx)
    assert tr.gemm[0].gflops > 1e-6 and tr.gemm[1].gflops == 1e9
    assert [(g.m, g.n, g.k) for g in tr.gemm] == [(8, 8, 8), (16, 32, 8)]
    assert all(a.gflops for a in tr.attention) and {c.direction for c in tr.conv} == {"forward", "backward"}
    assert one == before_one
    assert "faster of two rounds" in dev.rates.method
