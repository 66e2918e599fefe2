"""The sweep plans widths from the scan's capacities; the stage writes its contract or a
warning; summaries and speed-up pairing."""

from __future__ import annotations

import pytest

from memprobe.profile import PROFILES
from memprobe.result import Code, DeviceResult, Level, ScanResult
from memprobe.train import model as M
from memprobe.train import sweep as S
from memprobe.train.network import NetShape

QUICK, DEFAULT = PROFILES["quick"].training, PROFILES["default"].training

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
    assert res.training.points == []
    assert any("bandwidth" in w.text and w.code == Code.TRAINING for w in res.warnings)


def test_study_end_to_end_tiny_budget():
    from memprobe.scan.training import run_training_study

    res = ScanResult(host="h", started_at="t", devices={"cpu": _device()})
    tr = run_training_study(res, "cpu", plan=QUICK, budget_s=0.5, mnist=False)
    assert tr is res.training and tr.points, tr.skipped
    p = tr.points[0]
    assert p.device == "cpu" and p.model == "mlp" and p.layers > 0 and p.measured_s > 0
    assert p.bound in ("compute", "memory", "overhead")
    assert p.error == pytest.approx((p.predicted_s - p.measured_s) / p.measured_s)
    assert "median_abs_error_all" in tr.summary and tr.inputs["cpu"].gemm_rates and tr.inputs["cpu"].overhead_s
    # the whole thing round-trips through the scan's JSON
    assert ScanResult.from_json(res.to_json()).training == tr


def test_a_gpu_study_keeps_the_cpu_half_of_the_scan(monkeypatch):
    """`memprobe train --device gpu --scan S` keeps S's CPU points, epoch and inputs, and pairs
    the GPU points with CPU partners (the speed-up table)."""
    from memprobe.result import EpochResult, MlpInputs, TrainingPoint, TrainingStudy
    from memprobe.scan import training as T

    cpu_point = TrainingPoint(device="cpu", level="L2", width=64, layers=3, batch=16, threads="threads_all",
                              n_threads=2, working_set_bytes=100_000, flops=1e6, bytes=1e5, measured_s=4e-4,
                              predicted_s=4e-4, error=0.0)
    epoch = EpochResult(device="cpu", framework="numpy", threads=2, dims=[784, 256, 256, 10], batch=64,
                        samples=60000, steps=938, samples_done=60000, complete=True, epoch_s=1.0)
    res = ScanResult(host="h", started_at="t", devices={"cpu": _device(), "gpu": _device()},
                     training=TrainingStudy(points=[cpu_point], mnist={"cpu": epoch},
                                            inputs={"cpu": MlpInputs({"threads_all": {"gemm": 1e-6}}, {})}))
    res.devices["gpu"].kind = "gpu"
    gpu_point = {**cpu_point.__dict__, "device": "gpu", "threads": "threads_all", "measured_s": 1e-4}
    monkeypatch.setattr(T, "_gpu_usable", lambda framework: True)
    monkeypatch.setattr(S, "run_device_sweep", lambda *a, **k: {
        "points": [gpu_point], "skipped": [], "overhead_s": {}, "gemm_rates": {}, "warnings": [],
        "blas_threads_control": "none"})
    tr = T.run_training_study(res, "gpu", plan=QUICK, mnist=False)
    assert [p.device for p in tr.points] == ["cpu", "gpu"]
    assert tr.mnist["cpu"] == epoch and tr.inputs["cpu"].overhead_s == {"threads_all": {"gemm": 1e-6}}
    assert len(tr.speedup) == 1 and tr.speedup[0].gpu_over_cpu == pytest.approx(4.0)


def test_summary_and_speedup_pairing():
    pts = [{"device": "cpu", "batch": 16, "level": "L2", "bound": "compute", "error": e, "error_max": 0.5,
            "error_sum": 0.2, "width": 64, "threads": "threads_all", "measured_s": 1.0} for e in (-0.1, 0.2, 0.05)]
    s = S.summarize(pts)
    assert s["median_abs_error_batch_ge16"] == pytest.approx(0.1)
    gpu = [{"width": 64, "batch": 16, "measured_s": 0.25}]
    sp = S.pair_speedups(pts, gpu)
    assert sp[0]["gpu_over_cpu"] == pytest.approx(4.0)
    assert S.gpu_wins_from(sp) == {"16": 64}
    claims = S.judge_claims(None, None, sp)
    assert "outside" in claims[0]["finding"]


def test_pool_rounds_takes_each_input_median():
    from memprobe.result import ModelInputs

    rounds = [(ModelInputs(2, {"gemm": 1.0, "serial": 5.0}, 1e-9), {"fwd": {(16, 64): 10.0}}),
              (ModelInputs(2, {"gemm": 3.0, "serial": 4.0}, 3e-9), {"fwd": {(16, 64): 30.0, (16, 128): 7.0}}),
              (ModelInputs(2, {"gemm": 2.0, "serial": 6.0}, 2e-9), {"fwd": {(16, 64): 20.0}})]
    over, rates = S._pool_rounds(rounds)
    assert over == ModelInputs(2, {"gemm": 2.0, "serial": 5.0}, 2e-9)
    assert over.overhead_dict() == {"gemm": 2.0, "serial": 5.0, "cross_core_s_per_byte": 2e-9}  # as stored
    assert rates == {"fwd": {(16, 64): 20.0, (16, 128): 7.0}}  # a rate one round lacked: the others'


def _fake_steps(monkeypatch, slow_width=None, slow_s=1.0):
    """time_steps that records (width, steps, warmup) and sleeps `slow_s` for `slow_width`
    ("all": every point), reporting that time as its steps'."""
    import time as _time

    calls = []

    def fake(net, x, labels, steps, warmup=2):
        calls.append((net.shape.dims[1], steps, warmup))
        if net.shape.dims[1] == slow_width or slow_width == "all":
            _time.sleep(slow_s)
            return [slow_s / steps] * steps
        return [1e-4] * steps

    monkeypatch.setattr(S.N, "time_steps", fake)
    return calls


def test_points_run_in_rounds_with_inputs_measured_each_round(monkeypatch):
    calls = _fake_steps(monkeypatch)
    measured = []
    real = S._measure_inputs

    def spy(device, nthr, last_cache, reps):
        if reps == S.INPUT_REPS_PER_ROUND:  # not the untimed pass that loads the kernels
            measured.append(nthr)
        return real(device, nthr, last_cache, reps)

    monkeypatch.setattr(S, "_measure_inputs", spy)
    sw = S.run_device_sweep(_device(), "cpu", plan=QUICK, budget_s=5.0, free_bytes=8 << 30)
    assert sw["points"]
    n_runs = len({t for t in measured})
    sched = QUICK
    assert len(measured) == sched.rounds * n_runs  # inputs measured again every round
    for p in sw["points"]:
        assert len(p["samples_s"]) == sched.steps
    by_point: dict[int, list[tuple[int, int]]] = {}
    for w, steps, warm in calls:
        by_point.setdefault(w, []).append((steps, warm))
    for w, seq in by_point.items():
        # per point and thread count: a first round with WARMUP untimed steps, then one each
        firsts = [s for s in seq if s[1] == S.WARMUP]
        assert len(seq) == len(firsts) * sched.rounds and sum(s for s, _ in seq) == sched.steps * len(firsts)
    raw_rounds = {e["round"] for e in sw["gemm_rates"]["threads_all"]["raw"]}
    assert raw_rounds == set(range(sched.rounds))


def test_a_point_whose_rounds_do_not_fit_is_dropped_after_the_first(monkeypatch):
    plan = S.plan_points(S.capacities_of(_device()), max_working_set_bytes=2 << 30)
    slow = max(p.width for p in plan if p.batch == 16)
    calls = _fake_steps(monkeypatch, slow_width=slow)
    # the default schedule: later rounds to drop it from (quick has one round)
    sw = S.run_device_sweep(_device(), "cpu", plan=DEFAULT, budget_s=2.0, free_bytes=8 << 30)
    assert all(p["width"] != slow for p in sw["points"])
    dropped = [s for s in sw["skipped"] if s["width"] == slow and "a round of it" in s["why"]]
    ran = sum(1 for w, _, _ in calls if w == slow)
    # ran once, then no more; on a loaded machine the real input measurements can spend the
    # budget before its first round, and then it is left out without running at all
    assert ran == len(dropped) and (ran == 1 or any(s["width"] == slow for s in sw["skipped"]))


def test_inputs_include_kernel_overheads_and_row_width_rates():
    over = S.measure_cpu_overheads(1, reps=1)
    for k in S.ELEMENTWISE_KERNELS:
        assert over[f"serial:{k}"] > 0
    rates, _ = S.measure_cpu_rates(1, (16,), over, max_bytes=1 << 20, reps=1)
    assert set(rates["softmax_xent:serial"]) == {(0, m) for m in S.ROW_WIDTHS}
    assert set(rates["sgd_update:serial"]) == {(0, 0)}


def test_a_study_whose_first_round_overran_keeps_one_point(monkeypatch):
    calls = _fake_steps(monkeypatch, slow_width="all", slow_s=0.05)
    sw = S.run_device_sweep(_device(), "cpu", plan=DEFAULT, budget_s=2.0, free_bytes=8 << 30)
    assert len({w for w, _, warm in calls if warm == S.WARMUP}) > 1  # several ran a first round
    assert len(sw["points"]) == 1 and len(sw["points"][0]["samples_s"]) == S.STEPS
    assert sw["skipped"]


def test_a_one_round_study_keeps_every_point_it_measured(monkeypatch):
    calls = _fake_steps(monkeypatch, slow_width="all", slow_s=0.05)
    sw = S.run_device_sweep(_device(), "cpu", plan=QUICK, budget_s=2.0, free_bytes=8 << 30)
    ran = {w for w, _, warm in calls if warm == S.WARMUP}
    assert len(ran) > 1 and len(sw["points"]) == len(calls)  # nothing measured is thrown away
    assert all(len(p["samples_s"]) == QUICK.steps for p in sw["points"])


def test_a_flagged_all_thread_ceiling_leaves_out_those_points_only(monkeypatch):
    from memprobe.result import Flag

    _fake_steps(monkeypatch)
    dev = _device()
    dev.levels[0].flags.append(Flag(Code.CONTENTION, "bandwidth/copy/threads_all", 3.0, "below one thread's"))
    sw = S.run_device_sweep(dev, "cpu", plan=DEFAULT, budget_s=1.0, free_bytes=8 << 30)
    assert sw["points"] and {p["threads"] for p in sw["points"]} == {"threads_1"}
    assert any("threads_all points left out" in w and "flagged" in w for w in sw["warnings"])


def test_networks_over_the_keep_limit_are_rebuilt_each_round(monkeypatch):
    calls = _fake_steps(monkeypatch)
    monkeypatch.setattr(S, "KEEP_NETWORKS_BYTES", 0)
    built = []
    real = S.N.make_network
    monkeypatch.setattr(S.N, "make_network", lambda *a, **k: built.append(1) or real(*a, **k))
    sw = S.run_device_sweep(_device(), "cpu", plan=QUICK, budget_s=2.0, free_bytes=8 << 30)
    assert sw["points"] and all(len(p["samples_s"]) == QUICK.steps for p in sw["points"])
    assert len(built) == len(calls)  # one network per point and round: none kept


def test_overheads_are_scaled_to_the_steps_own_call_sequence():
    """The step plan on one-element operands against the same calls' overheads measured one
    kind at a time: a factor near 1 (calls cost more, not orders of magnitude more, in their
    own sequence), and the inputs' overheads are the measured ones times it."""
    alone = S.measure_cpu_overheads(1, reps=3)
    factor, mixed_s = S.in_step_overhead_factor(1, alone, reps=3)
    assert 0.5 < factor < 3.0 and mixed_s > 0
    over, _rates, raw, _how = S._measure_inputs("cpu", 1, 8 << 20, 1)
    rec = [e for e in raw if e["class"] == "in_step_overhead_factor"]
    assert len(rec) == 1 and rec[0]["factor"] > 0
    assert set(over.call_overhead_s) == set(alone)  # every class measured alone is kept, scaled
    assert over.cross_core_s_per_byte == 0.0  # (one thread: nothing crosses cores)


def test_the_cross_core_cost_is_measured_on_all_threads_only():
    assert S.measure_cross_core_s_per_byte(1) == 0.0
    got = S.measure_cross_core_s_per_byte(2, reps=3)
    assert got >= 0.0 and got < 1e-7  # seconds per byte: below 10 MB/s would be no cache at all
