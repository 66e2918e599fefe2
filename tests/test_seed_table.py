"""The seed table (memprobe/train/seed_table.py): the projection on fixed ceilings, a tiny real
check, and its rows through the result's schema."""

import importlib.util

import pytest

from memprobe.result import ModelInputs
from memprobe.train import model as M
from memprobe.train import seed_table as ST
from memprobe.train.families import CnnSpec, gpt2_small, resnet50

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="the cnn and transformer families need PyTorch (pip install 'memprobe[torch]')")


def _ceilings(rate=200e9, bw_scale=1.0):
    levels = [M.LevelCeiling("L1", 48e3, {k: 300e9 * bw_scale for k in ("read", "write", "copy", "triad")}),
              M.LevelCeiling("L2", 2e6, {k: 100e9 * bw_scale for k in ("read", "write", "copy", "triad")}),
              M.LevelCeiling("memory", None, {k: 15e9 * bw_scale for k in ("read", "write", "copy", "triad")})]
    return M.Ceilings(levels, {}, {}, 2)


def _hand_inputs(graph, gflops=100.0):
    """Made-up inputs: a GEMM at `gflops`, the rest at 1 G elements/s, each call 1 us."""
    from memprobe.train import op_rates as R
    from memprobe.train import predict as P

    rates = {}
    for k, op in R.distinct_kernels(graph).items():
        w = R.work_of(op)
        rates[k] = R.OpRate(k, op.name, w / (gflops * 1e9 if op.category == "gemm" else 1e9) + 1e-6, 1e-6, w,
                            R.replay_bytes(op), 1)
    return P.StepInputs(rates, ModelInputs(1, cross_core_s_per_byte=0.0, backward_call_s=5e-6,
                                           fault_s_per_byte=1e-10, update_call_s=(1e-5, 2e-6)))


@needs_torch
@pytest.mark.parametrize("spec", [resnet50(4, 64), gpt2_small(1, 64)], ids=["resnet50", "gpt2"])
def test_the_bound_follows_the_ceilings(spec):
    from memprobe.train import family_sweep as FS
    from memprobe.train import predict as P

    g = FS.capture_point(spec)
    inputs = _hand_inputs(g, 200.0)
    fast = P.predict(g, _ceilings(), inputs)
    # the GEMMs alone at the rate set: a floor the step cannot beat
    assert fast.predicted_s >= sum(o.flops or 0 for o in g.kernels if o.category == "gemm") / 200e9
    bound, shares = ST.captured_bound_of(fast)
    assert sum(shares.values()) == pytest.approx(1.0) and bound == max(shares, key=shares.get)
    assert bound == "compute"  # at 200 GFLOP/s and these bandwidths, both networks are GEMM work
    # a thousandfold slower memory makes a level the bound, and the sentence names it
    slow = P.predict(g, _ceilings(bw_scale=0.001), inputs)
    sb, ss = ST.captured_bound_of(slow)
    assert sb in ("L1", "L2", "memory") and slow.predicted_s > fast.predicted_s
    assert sb in ST.bound_sentence("task", sb, ss)


def test_the_mnist_row_comes_from_the_studys_epoch():
    epoch = {"steps": 938, "threads": 2, "complete": True, "epoch_s": 1.0, "predicted_epoch_s": 0.9}
    row = ST.mnist_row(epoch, None)
    assert row["predicted_s"] == 0.9 and row["check_error"] == pytest.approx(-0.1)
    assert row["check_measured_s"] == pytest.approx(1.0 / 938) and row["claimed_s"] == 40.0
    assert "no MNIST" in ST.mnist_row(None, None)["note"]


@needs_torch
def test_a_tiny_real_check_makes_a_row_that_round_trips(tmp_path, small_cpu_device):
    from pydantic import TypeAdapter

    from memprobe.result import ScanResult, SeedRow

    small = CnnSpec(batch=2, channels=16, resolution=8)
    row = ST.family_row("resnet50_epoch", CnnSpec(batch=4, channels=16, resolution=8), 100, small,
                        small_cpu_device, "a tiny stand-in", "the tiny cnn", steps=2)
    assert row["check_measured_s"] > 0 and row["check_predicted_s"] > 0 and row["predicted_s"] > 0
    assert row["check_error"] == pytest.approx(row["check_predicted_s"] / row["check_measured_s"] - 1)
    assert row["bound"] in row["bound_text"] and row["claimed_s"] == 3 * 3600
    res = ScanResult(host="h", started_at="t", devices={"cpu": small_cpu_device})
    res.training.seed_table = TypeAdapter(list[SeedRow]).validate_python([row])
    res.save(tmp_path / "scan.json")
    back = ScanResult.load(tmp_path / "scan.json")
    assert back.training.seed_table == res.training.seed_table
    assert back.training.seed_table[0].check_measured_s == row["check_measured_s"]


def test_a_row_with_a_wrong_type_is_refused():
    from pydantic import TypeAdapter, ValidationError

    from memprobe.result import SeedRow

    with pytest.raises(ValidationError):
        TypeAdapter(SeedRow).validate_python({"task": "t", "device": "cpu", "model": "cnn", "workload": "w",
                                              "predicted_s": "three hours"})


@needs_torch
def test_the_full_size_step_runs_at_its_check_counterparts_rates():
    """The projection: the full-size step and a smaller check of the same network are captured;
    every full-size kernel takes its check counterpart's rate (its own work at that rate, the
    counterpart's call), the step's terms are the check's, and the predictor runs on it."""
    from memprobe.train import family_sweep as FS
    from memprobe.train import op_rates as R
    from memprobe.train import predict as P
    from memprobe.train.families import TransformerSpec
    from memprobe.train.inputs import aligned_ops, projected_inputs

    for full, check in ((resnet50(2, 96), resnet50(1, 64)),
                        (TransformerSpec(4, 32, 32, heads=2, layers=2, vocab=64, tied=True),
                         TransformerSpec(1, 16, 32, heads=2, layers=2, vocab=64, tied=True))):
        g_full, g_check = FS.capture_point(full), FS.capture_point(check)
        twins = aligned_ops(g_full, g_check)
        assert set(twins) == {o.index for o in g_full.kernels}  # every kernel has a counterpart
        assert all((o.name, o.phase) == (twins[o.index].name, twins[o.index].phase) for o in g_full.kernels)
        check_in = _hand_inputs(g_check)
        rates = check_in.rates
        full_in = projected_inputs(g_full, g_check, check_in)
        first = {}
        for op in g_full.kernels:  # (ops of one shape share a rate: the first one's counterpart's)
            first.setdefault(R.op_key(op), op)
        for op in first.values():
            mine, theirs = full_in.rates[R.op_key(op)], rates[R.op_key(twins[op.index])]
            assert mine.overhead_s == theirs.overhead_s and mine.bytes == theirs.bytes
            if R.work_of(op) > 0:  # its own work at the counterpart's rate, plus the counterpart's call
                assert mine.call_s - mine.overhead_s == pytest.approx(R.work_of(op) / theirs.rate)
        assert full_in.machine.backward_call_s == 5e-6 and full_in.fault_bytes is None
        c = _ceilings()
        pred = P.predict(g_full, c, full_in)
        assert pred.coverage == 1.0 and not pred.unmodelled
        gemm = sum(o.flops or 0 for o in g_full.kernels if o.category == "gemm")
        assert pred.predicted_s >= gemm / 100e9  # the GEMMs at their rate: a floor
        assert pred.predicted_s > P.predict(g_check, c, check_in).predicted_s
        bound, shares = ST.captured_bound_of(pred)
        assert sum(shares.values()) == pytest.approx(1.0) and bound == max(shares, key=shares.get)
        assert bound in ST.bound_sentence("task", bound, shares)
