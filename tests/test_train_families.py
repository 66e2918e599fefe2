"""The CNN and transformer families (memprobe/train/families.py): op lists by formula, and the
same networks in PyTorch (torch_families.py) held to them by PyTorch's own profiler."""

import importlib.util

import pytest

from memprobe.train.families import gpt2_small as gpt2_small_spec  # noqa: E402
from memprobe.train.families import (CnnSpec, TransformerSpec, cnn_ops, resnet50, forward_ops, parameters, training_flops,
                                     transformer_ops, working_set_bytes)

CNN = CnnSpec(batch=4, channels=32, resolution=16, blocks=2)
GPT = TransformerSpec(batch=2, seq=32, width=64, heads=4, layers=2)


def test_convolution_and_attention_flops_by_formula():
    conv = next(o for o in cnn_ops(CNN) if o.name == "block0.conv3x3")
    assert conv.flops == 2 * 4 * 8 * 16 * 16 * 8 * 9  # 2 x outputs x in-channels x 3 x 3
    scores = next(o for o in transformer_ops(GPT) if o.name == "layer0.scores")
    assert scores.flops == 2 * 2 * 4 * 32 * 32 * 16  # 2 x heads' T x T scores x head width
    longer = TransformerSpec(batch=2, seq=64, width=64, heads=4, layers=2)
    grow = next(o for o in transformer_ops(longer) if o.name == "layer0.scores").flops / scores.flops
    assert grow == 4  # attention is quadratic in the sequence


def test_training_step_and_working_set_grow_with_the_batch():
    for small, big in ((CNN, CnnSpec(batch=16, channels=32, resolution=16)),
                       (GPT, TransformerSpec(batch=8, seq=32, width=64, heads=4, layers=2))):
        assert training_flops(big) > 3 * training_flops(small)
        assert working_set_bytes(big) > working_set_bytes(small) > parameters(small) * 4
        assert all(o.bytes > 0 for o in forward_ops(small))


needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="the cnn and transformer families need PyTorch (pip install 'memprobe[torch]')")


@needs_torch
@pytest.mark.parametrize("spec", [CNN, GPT], ids=["cnn", "transformer"])
def test_the_op_list_is_what_pytorch_runs(spec):
    """Every kernel the profiler records for a forward pass and its loss is an op of the list, in
    order, and the GEMM and convolution FLOPs it counts are the list's within 2 %."""
    from memprobe.train.torch_families import profile_forward

    names, flops = profile_forward(spec)
    ops = forward_ops(spec)
    assert names == [o.aten for o in ops]
    assert flops == pytest.approx(sum(o.flops for o in ops if o.gemm), rel=0.02)


# the kernels that carry a step's work: the capture must hold exactly as many of each as the
# profiler records (other operators also run nested inside composites, or as views)
WORK_KERNELS = ("convolution", "convolution_backward", "addmm", "mm", "bmm", "native_batch_norm",
                "native_batch_norm_backward", "native_layer_norm", "native_layer_norm_backward", "_softmax",
                "_softmax_backward_data", "_log_softmax", "_log_softmax_backward_data", "nll_loss_forward",
                "nll_loss_backward", "gelu", "gelu_backward", "relu", "threshold_backward", "max_pool2d_with_indices",
                "max_pool2d_with_indices_backward", "embedding_dense_backward", "masked_fill", "lerp_", "addcdiv_",
                "addcmul_", "sqrt", "mul_")


@needs_torch
@pytest.mark.parametrize("spec", [CNN, GPT, resnet50(2, 64)], ids=["cnn (sgd)", "transformer (adamw)", "resnet50"])
def test_the_captured_step_is_what_the_profiler_records(spec):
    """The capture (under fake tensors) against torch.profiler on a real step of the same
    network: every kernel it records is an operator the profiler records, and the work-carrying
    kernels (GEMMs, convolutions, norms, softmaxes, the loss, activations, the optimizer's
    arithmetic) come in the same number, kind for kind, forward, backward and update."""
    from collections import Counter

    from memprobe.train.family_sweep import capture_point
    from memprobe.train.torch_families import profile_step

    g = capture_point(spec)
    assert not g.unmodelled
    captured = Counter(o.packet for o in g.kernels)
    recorded = profile_step(spec)
    assert {p for p in captured if p not in recorded} == set()
    kinds = [k for k in WORK_KERNELS if captured.get(k) or recorded.get(k)]
    assert kinds and {k: captured.get(k, 0) for k in kinds} == {k: recorded.get(k, 0) for k in kinds}
    assert {"convolution_backward", "mm", "bmm"} & set(kinds)  # a backward pass's GEMMs are in


@needs_torch
@pytest.mark.parametrize("spec", [CNN, GPT], ids=["cnn", "transformer"])
def test_parameters_by_formula(spec):
    from memprobe.train.torch_families import build

    assert sum(p.numel() for p in build(spec).parameters()) == parameters(spec)


@needs_torch
@pytest.mark.parametrize("spec", [CNN, GPT], ids=["cnn", "transformer"])
def test_training_makes_the_loss_fall(spec):
    from memprobe.train.torch_families import train_steps

    losses = train_steps(spec, 15)
    assert losses[-1] < 0.6 * losses[0], losses


def test_without_torch_the_families_say_why_in_one_line(monkeypatch):
    import builtins

    from memprobe.train.torch_families import torch_missing

    real = builtins.__import__

    def no_torch(name, *a, **k):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    why = torch_missing()
    assert why and "\n" not in why and "memprobe[torch]" in why


# ---- the prediction (family_model) and the sweep (family_sweep) ----------------------------------
from memprobe.result import ModelInputs  # noqa: E402
from memprobe.train import family_model as FM  # noqa: E402
from memprobe.train import model as M  # noqa: E402


def _ceilings(spec, bw_scale=1.0):
    """A fixed ceilings object: three levels, one rate per op class, one overhead per call class."""
    levels = [M.LevelCeiling("L1", 48e3, {k: 300e9 * bw_scale for k in ("read", "write", "copy", "triad")}),
              M.LevelCeiling("L2", 2e6, {k: 100e9 * bw_scale for k in ("read", "write", "copy", "triad")}),
              M.LevelCeiling("memory", None, {k: 15e9 * bw_scale for k in ("read", "write", "copy", "triad")})]
    ops = FM.step_ops(spec)
    rates = {op.klass: {(1, 0): 50e9} for op in ops}
    over = {op.kernel: 2e-6 for op in ops}
    return M.Ceilings(levels, rates, over, 1)


@pytest.mark.parametrize("spec", [CNN, GPT], ids=["cnn", "transformer"])
def test_the_step_op_list_holds_the_forward_pass_and_every_parameter(spec):
    fwd = FM.forward_with_operands(spec)
    assert [(f.name, f.flops, f.read_bytes, f.out[1]) for f in fwd] == \
        [(o.name, o.flops, o.read_bytes, o.write_bytes) for o in forward_ops(spec)]
    assert sum(n for _, n in FM.param_tensors(spec)) == parameters(spec)
    ops = FM.step_ops(spec)
    updates = [o for o in ops if o.kind == "update"]
    assert len(updates) == len(FM.param_tensors(spec))
    # the backward's GEMM work is twice the forward's, less the first layer's input gradient
    gemm_fwd = sum(o.flops for o in ops if o.kind == "gemm" and not o.name.endswith(".bwd"))
    gemm_bwd = sum(o.flops for o in ops if o.kind == "gemm" and o.name.endswith(".bwd"))
    assert gemm_fwd < gemm_bwd <= 2 * gemm_fwd


@pytest.mark.parametrize("spec", [CNN, GPT], ids=["cnn", "transformer"])
def test_the_prediction_is_pure_and_follows_its_ceilings(spec):
    so = ModelInputs(backward_call_s=10e-6, update_call_s=(20e-6, 0.0))
    a = FM.predict_family_step(spec, _ceilings(spec), so)
    b = FM.predict_family_step(spec, _ceilings(spec), so)
    assert a == b and a.predicted_s > 0
    assert a.predicted_s == pytest.approx(a.roofline_s + a.overhead_s)
    n_ops = len(FM.step_ops(spec))
    assert a.overhead_s == pytest.approx(n_ops * 2e-6 + 30e-6)
    # slower memory never makes the step faster, and makes some op slower
    slow = FM.predict_family_step(spec, _ceilings(spec, bw_scale=0.01), so)
    assert slow.memory_s == pytest.approx(100 * a.memory_s) and slow.predicted_s > a.predicted_s
    bounds = {FM.op_bound(p) for p in slow.ops}
    assert bounds <= {"compute", "overhead", "L1", "L2", "memory"} and bounds & {"L1", "L2", "memory"}


def test_fresh_large_tensors_pay_their_page_faults():
    """GPT-2 small's step allocates its token table's gradients (154 MB each) and AdamW's
    temporaries for it fresh; a small network allocates nothing over glibc's mmap threshold.
    The fault cost adds exactly fresh bytes x seconds per byte to the step."""
    from memprobe.train.families import gpt2_small

    big = gpt2_small(1, 128)
    ops = FM.step_ops(big)
    table = 50257 * 768 * 4
    fresh = {o.name: FM.fresh_bytes(o) for o in ops if FM.fresh_bytes(o)}
    assert fresh and all(b > FM.MMAP_THRESHOLD_BYTES for b in fresh.values())
    assert fresh.get("embed.tokens.w.update") == 2 * table  # the optimizer's two temporaries only
    assert any(name.endswith(".bwd") and b == table for name, b in fresh.items())
    assert not any(FM.fresh_bytes(o) for o in FM.step_ops(GPT))
    c = _ceilings(big)
    base = FM.predict_family_step(big, c, ModelInputs(backward_call_s=0.0, update_call_s=(0.0, 0.0)))
    paid = FM.predict_family_step(big, c, ModelInputs(backward_call_s=0.0, update_call_s=(0.0, 0.0),
                                                       fault_s_per_byte=1e-9))
    assert paid.memory_s - base.memory_s == pytest.approx(sum(fresh.values()) * 1e-9)


@pytest.mark.parametrize("spec", [CNN, GPT, resnet50(2, 96)], ids=["cnn", "transformer", "resnet50"])
def test_the_tiny_instance_keeps_the_ops_and_sums_their_overheads(spec):
    """The instance that scales the call overheads has the same op kinds in the same order and
    almost none of the work; its overheads alone are what the prediction sums."""
    tiny = FM.tiny_like(spec)
    kinds = [o.kernel for o in FM.step_ops(spec)]
    assert [o.kernel.split("(")[0] for o in FM.step_ops(tiny)] == [k.split("(")[0] for k in kinds]
    assert sum(o.flops for o in FM.step_ops(tiny)) < 5e-3 * sum(o.flops for o in FM.step_ops(spec))
    c = _ceilings(tiny)
    so = ModelInputs(backward_call_s=10e-6, update_call_s=(20e-6, 0.0))
    assert FM.step_overhead_s(tiny, c.overhead_s, so) == pytest.approx(FM.predict_family_step(tiny, c, so).overhead_s)


@needs_torch
def test_a_step_of_the_tiny_transformer_runs():
    from memprobe.train.family_sweep import time_family_steps

    assert all(t > 0 for t in time_family_steps(FM.tiny_like(GPT), 1, 1))


@pytest.mark.parametrize("spec", [CNN, resnet50(2, 96)], ids=["cnn", "resnet50"])
@needs_torch
def test_a_step_of_the_tiny_cnn_runs(spec):
    from memprobe.train.family_sweep import time_family_steps

    assert all(t > 0 for t in time_family_steps(FM.tiny_like(spec), 1, 1))


def test_operands_past_the_rates_level_add_their_extra_time():
    """A rate measured with its operands in L2 already paid L2's stream; an input the step
    brings from memory adds bytes x (1/BW(memory) - 1/BW(L2)) on top of the op's compute (an
    output's write-back runs behind the work)."""
    c = _ceilings(CNN)
    op = M.Op("x", "gemm", "fwd|conv(4,32,32,16,3,1)", 1e6,
              (M.Operand("in", 1 << 20, False), M.Operand("out", 1 << 20, True)), 0, "fwd|conv")
    l2, mem = c.levels[1], c.levels[2]
    far = {"in": 64 << 20, "out": 64 << 20}  # footprints past L2: memory
    near = {"in": 1 << 20, "out": 1 << 20}
    kern = op.stream_kernel
    want = (1 << 20) * (1 / mem.bandwidth_bps[kern] - 1 / l2.bandwidth_bps[kern])  # the input only
    assert FM.excess_memory_s(op, far, c, l2) == pytest.approx(want)
    assert FM.excess_memory_s(op, near, c, l2) == 0.0  # nothing farther than the rate's level
    assert FM.excess_memory_s(op, far, c, None) == 0.0  # (the optimizer's own rate)
    # the rate's level: where the measured shape's operands (twice the forward's) fit
    lone = FM.LoneOp("conv", (1, 32, 32, 16, 3, 1))
    got = FM.rate_level(op.klass, 4, M.Ceilings(c.levels, {op.klass: {(1, 0): 1e9}}, {}, 1))
    assert got is c.level_for(FM.forward_bytes(lone) * FM.LONE_FOOTPRINT)
    assert FM.rate_level("update|sgd()", 4, M.Ceilings(c.levels, {"update|sgd()": {(1, 0): 1e9}}, {}, 1)) is None
    # in a step, the op's time is its compute plus that extra, or its whole stream if longer
    p = M.OpPrediction("x", 1e6, 2 << 20, 1e-4, 5e-5, 0.0, {}, kern, 2e-5)
    assert p.roofline_s == pytest.approx(1.2e-4) and FM.op_bound(p) == "compute"
    p = M.OpPrediction("x", 1e6, 2 << 20, 1e-4, 5e-4, 0.0, {"in": "memory"}, kern, 2e-5)
    assert p.roofline_s == pytest.approx(5e-4) and FM.op_bound(p) == "memory"


@pytest.fixture
def gpu_on_meta(monkeypatch):
    """The families' GPU path on PyTorch's meta device (shapes, no data): every timing still
    waits for the device, counted here."""
    import torch

    from memprobe.train import torch_families as TF

    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: synced.append(1))
    monkeypatch.setattr(TF, "GPU_DEVICE", "meta")
    return synced


def _gpu_device():
    from memprobe.result import DeviceResult, Level

    def lv(name, size, gbs):
        return Level(name, size, 30.0, 60.0, {k: {"threads_all": gbs} for k in ("read", "write", "copy", "triad")})
    return DeviceResult("gpu", "fake", levels=[lv("L1", 256 << 10, 8000.0), lv("L2", 50 << 20, 5000.0),
                                               lv("memory", None, 3000.0)])


@needs_torch
def test_the_gpu_sweep_builds_and_times_on_the_gpu_device(gpu_on_meta, monkeypatch):
    from memprobe.train import family_sweep as FS
    from memprobe.train import torch_families as TF

    built = []
    real = TF.build
    monkeypatch.setattr(TF, "build", lambda spec, seed=0: built.append(real(spec, seed)) or built[-1])
    pts = [FS.FamilyPoint("L2", 0.5, CnnSpec(batch=2, channels=8, resolution=8, blocks=1))]
    sw = FS.run_family_sweep(_gpu_device(), "cnn", points=pts, steps=2, free_bytes=1 << 30, device="gpu")
    assert [(p["device"], p["threads"]) for p in sw["points"]] == [("gpu", "threads_all")]
    assert built and all(next(m.parameters()).device.type == "meta" for m in built)
    assert gpu_on_meta  # the timings waited for the device
    assert TF.device() == "cpu"  # and the device is the CPU again after the sweep


@needs_torch
def test_the_seed_tables_gpu_half(gpu_on_meta, monkeypatch):
    """With a GPU in the scan and PyTorch on CUDA, the GPU rows are measured like the CPU's;
    without CUDA they say why."""
    from memprobe.result import ScanResult
    from memprobe.scan import training as T
    from memprobe.train import seed_table as ST
    from memprobe.train import torch_families as TF

    tiny = CnnSpec(batch=1, channels=8, resolution=8, blocks=1)
    row = ST.family_row("resnet50_epoch", tiny, 10, tiny, _gpu_device(), "a tiny stand-in", "the tiny cnn",
                        steps=2, device="gpu")
    assert row["device"] == "gpu" and row["claimed_s"] == ST.CLAIMS["resnet50_epoch"]["gpu_s"]
    assert row["threads"] is None and row["predicted_s"] > 0 and row["check_measured_s"] > 0
    assert gpu_on_meta
    res = ScanResult(host="h", started_at="t", devices={"cpu": _gpu_device(), "gpu": _gpu_device()})
    monkeypatch.setattr(TF, "cuda_missing", lambda: "this PyTorch sees no CUDA device")
    cpu_rows = [dict(row, device="cpu", claimed_s=1.0, claimed_hardware="x")]
    T.run_seed_table(res, torch_rows=cpu_rows)
    gpu = [r for r in res.training.seed_table if r.device == "gpu"]
    assert [r.task for r in gpu] == ["mnist_epoch", "resnet50_epoch", "gpt2_finetune"]
    assert all("no CUDA" in r.note for r in gpu[1:])


@needs_torch
def test_memprobe_train_runs_the_families_on_the_gpu(gpu_on_meta, monkeypatch, tmp_path, small_cpu_device):
    """`memprobe train --device gpu --model cnn` on a scan with GPU levels: the family's points
    are the GPU's (PyTorch on the device in force), written to scan.json."""
    import json

    import torch

    from memprobe.cli import main
    from memprobe.result import ScanResult
    from memprobe.train import family_sweep as FS
    from memprobe.train import torch_families as TF

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (8 << 30, 16 << 30))
    monkeypatch.setattr(TF, "cuda_missing", lambda: None)
    # one point per batch, small: the GPU path is what is checked, not the sweep's reach
    monkeypatch.setattr(FS, "TARGETS", ((0, 0.5),))
    gpu = _gpu_device()
    gpu.levels[0].size_bytes = 64 << 10
    scan = tmp_path / "in.json"
    ScanResult(host="h", started_at="t", devices={"cpu": small_cpu_device, "gpu": gpu}).save(scan)
    assert main(["train", "--device", "gpu", "--model", "cnn", "--scan", str(scan), "--out", str(tmp_path / "o")]) == 0
    pts = [p for p in json.loads((tmp_path / "o" / "scan.json").read_text())["training"]["points"]
           if p["model"] == "cnn"]
    assert pts and {(p["device"], p["threads"]) for p in pts} == {("gpu", "threads_all")}


def test_a_missing_rate_is_named_not_invented():
    c = _ceilings(CNN)
    c.rates_flops.pop(next(iter(c.rates_flops)))
    with pytest.raises(M.MissingCeiling):
        FM.predict_family_step(CNN, c, ModelInputs(backward_call_s=0.0, update_call_s=(0.0, 0.0)))


def test_sizes_cross_the_levels():
    from memprobe.train.family_sweep import plan_family

    caps = [("L1", 48 << 10), ("L2", 2 << 20), ("L3", 16 << 20)]
    for fam in ("cnn", "transformer"):
        pts = plan_family(fam, caps, batches=(1, 16, 64))
        for b in (1, 16, 64):
            ws = [p.working_set_bytes for p in pts if p.spec.batch == b]
            # a batch of 64 sequences carries the weights and 64 rows of activations: just past L2
            assert min(ws) < (2 << 20) * (1 if b == 1 else 1.5) and max(ws) > 2 * (16 << 20), (fam, b, ws)


@needs_torch
@pytest.mark.parametrize("spec", [CnnSpec(batch=2, channels=16, resolution=8),
                                  TransformerSpec(batch=2, seq=16, width=32, heads=4, layers=1)],
                         ids=["cnn", "transformer"])
@pytest.mark.parametrize("method", ["captured", "hand"])
def test_a_tiny_sweep_point_runs_and_records_its_ops(spec, method, small_cpu_device):
    from memprobe.result import TrainingPoint
    from memprobe.train.family_sweep import FamilyPoint, capture_point, run_family_sweep

    out = run_family_sweep(small_cpu_device, spec.model, budget_s=300.0, steps=2,
                           points=[FamilyPoint("L2", 0.1, spec)], free_bytes=1e9, method=method)
    assert out["points"] and not out["skipped"]
    kernels = capture_point(spec).kernels  # every captured kernel predicted, none unmodelled
    for p in out["points"]:
        assert p["model"] == spec.model and p["measured_s"] > 0 and p["predicted_s"] > 0
        if method == "captured":
            assert len(p["ops"]) == len(kernels)
            assert p["ops"][0]["name"] == f"{kernels[0].packet} {kernels[0].phase}"
        else:
            assert len(p["ops"]) == len(FM.step_ops(spec))
        assert {o["bound"] for o in p["ops"]} <= {"compute", "overhead", "L1", "L2", "memory"}
        from pydantic import TypeAdapter

        assert TypeAdapter(TrainingPoint).validate_python(p).ops[0].name == p["ops"][0]["name"]


def test_without_torch_the_study_warns_once_and_runs_no_family(monkeypatch, small_cpu_device):
    from memprobe.result import Code, ScanResult
    from memprobe.scan.training import run_training_study
    from memprobe.train import torch_families

    monkeypatch.setattr(torch_families, "torch_missing", lambda: "no torch here (pip install 'memprobe[torch]')")
    res = ScanResult(host="h", started_at="t", devices={"cpu": small_cpu_device})
    tr = run_training_study(res, "cpu", models=("cnn", "transformer"), mnist=False)
    assert tr.points == []
    lines = [w.text for w in res.warnings if w.code == Code.TRAINING]
    assert len(lines) == 1 and "cnn, transformer skipped" in lines[0] and "\n" not in lines[0]


# ---- the seed table's real architectures: ResNet-50 and GPT-2 small ----------------------------
from memprobe.train.families import ResNetSpec, gpt2_small, resnet50  # noqa: E402


def test_resnet50_by_formula():
    spec = resnet50(1)
    assert isinstance(spec, ResNetSpec) and spec.model == "cnn"
    assert parameters(spec) == 25_557_032  # torchvision's resnet50: 25.6 M
    ops = forward_ops(spec)
    convs = [o for o in ops if o.kind == "conv"]
    assert len(convs) == 1 + 16 * 3 + 4  # stem, three per block, one projection per stage
    # 4.1 G multiply-adds per 224x224 image (the figure quoted for ResNet-50)
    assert sum(o.flops for o in ops if o.gemm) / 2 == pytest.approx(4.09e9, rel=0.01)
    stem = ops[0]
    assert stem.flops == 2 * 64 * 112 * 112 * 3 * 49  # 7x7, stride 2: 112x112 outputs


def test_gpt2_small_by_formula():
    spec = gpt2_small(1, 1024)
    assert parameters(spec) == 124_439_808  # GPT-2 small, head tied to the token embedding
    assert parameters(gpt2_small(1, 64)) == parameters(spec)  # the position table stays 1024 long
    head = next(o for o in forward_ops(spec) if o.name == "head")
    assert head.flops == 2 * 1024 * 768 * 50257  # no bias on a tied head
    assert sum(n for _, n in FM.param_tensors(spec)) == parameters(spec)


@pytest.mark.parametrize("spec", [resnet50(2, 32), gpt2_small(1, 16)], ids=["resnet50", "gpt2"])
def test_the_real_architectures_step_op_lists_hold_together(spec):
    fwd = FM.forward_with_operands(spec)
    assert [(f.name, f.flops, f.read_bytes, f.out[1]) for f in fwd] == \
        [(o.name, o.flops, o.read_bytes, o.write_bytes) for o in forward_ops(spec)]
    assert sum(n for _, n in FM.param_tensors(spec)) == parameters(spec)
    assert len([o for o in FM.step_ops(spec) if o.kind == "update"]) == len(FM.param_tensors(spec))


@needs_torch
@pytest.mark.parametrize("spec", [resnet50(1), gpt2_small(1)], ids=["resnet50", "gpt2"])
def test_the_real_architectures_parameters_in_pytorch(spec):
    """Built on the meta device (no memory, no initialisation): PyTorch's count and tensor list
    are the formula's, a shared (tied) weight counted once."""
    import torch

    from memprobe.train.torch_families import build

    with torch.device("meta"):
        net = build(spec)
    assert sum(p.numel() for p in net.parameters()) == parameters(spec)
    assert [p.numel() for p in net.parameters()] == [n for _, n in FM.param_tensors(spec)]


@needs_torch
@pytest.mark.parametrize("spec", [resnet50(2, 32), gpt2_small(1, 8)], ids=["resnet50", "gpt2"])
def test_the_real_architectures_op_lists_are_what_pytorch_runs(spec):
    from memprobe.train.torch_families import profile_forward

    names, flops = profile_forward(spec)
    ops = forward_ops(spec)
    assert names == [o.aten for o in ops]
    assert flops == pytest.approx(sum(o.flops for o in ops if o.gemm), rel=0.02)


@needs_torch
@pytest.mark.parametrize("spec", [CNN, TransformerSpec(batch=2, seq=16, width=32, heads=4, layers=1),
                                  TransformerSpec(batch=1, seq=16, width=32, heads=4, layers=1),
                                  resnet50(2, 32), gpt2_small_spec(2, 8)],
                         ids=["cnn", "transformer", "transformer-batch1", "resnet50", "gpt2"])
def test_the_backward_is_the_nodes_pytorch_runs(spec):
    """Every autograd node of a backward pass is an op of the model's backward, kind for kind
    (views and the parameters' leaves aside), the attention's reshape copies included."""
    from collections import Counter

    from memprobe.train.torch_families import BACKWARD_NODE_KIND, BACKWARD_NODES_WITHOUT_OP, profile_backward

    nodes = profile_backward(spec)
    assert not set(nodes) - set(BACKWARD_NODE_KIND) - BACKWARD_NODES_WITHOUT_OP
    ran = Counter(BACKWARD_NODE_KIND[n] for n in nodes if n in BACKWARD_NODE_KIND)
    kind = {"add_bcast": "add"}  # the broadcast addition's node is an AddBackward0
    model = Counter(kind.get(k, k) for k in (o.klass.split("|")[1].split("(")[0]
                                             for o in FM.step_ops(spec) if o.name.endswith(".bwd")))
    assert ran == model


@needs_torch
@pytest.mark.parametrize("spec", [CNN, GPT], ids=["cnn (sgd)", "transformer (adamw)"])
def test_the_update_is_the_kernels_pytorch_runs(spec):
    """An optimizer step runs UPDATE_KERNELS on every parameter tensor, in order, and the
    model's update op for a tensor touches it once per read or write the table lists."""
    from memprobe.train.torch_families import profile_update

    opt = FM.optimizer_of(spec)
    kernels = [k for k, _r, _w in FM.UPDATE_KERNELS[opt]]
    tensors = FM.param_tensors(spec)
    assert profile_update(spec) == kernels * len(tensors)
    name, n = tensors[0]
    op = next(o for o in FM.step_ops(spec) if o.name == f"{name}.update")
    touches = sum(len(r) + len(w) for _k, r, w in FM.UPDATE_KERNELS[opt])
    assert len(op.operands) == touches and op.bytes == touches * 4 * n
