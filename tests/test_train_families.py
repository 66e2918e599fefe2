"""The CNN and transformer families (memprobe/train/families.py, torch_families.py) and their
sweep (family_sweep.py): the networks as PyTorch runs them, held to PyTorch's own profiler; the
sweep's plan from captured working sets; a sweep point captured, predicted and timed, on the
CPU and (on PyTorch's meta device) on the GPU path, whose rates come from the GPU scan's table."""

import importlib.util

import pytest

from memprobe.train.families import CnnSpec, ResNetSpec, TransformerSpec, gpt2_small, resnet50

CNN = CnnSpec(batch=4, channels=32, resolution=16, blocks=2)
GPT = TransformerSpec(batch=2, seq=32, width=64, heads=4, layers=2)

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="the cnn and transformer families need PyTorch (pip install 'memprobe[torch]')")


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
def test_the_captured_working_set_grows_with_the_batch_and_holds_the_weights():
    from memprobe.train.family_sweep import FamilyPoint
    from memprobe.train.torch_families import build

    for small, big in ((CNN, CnnSpec(batch=16, channels=32, resolution=16)),
                       (GPT, TransformerSpec(batch=8, seq=32, width=64, heads=4, layers=2))):
        weights = 4 * sum(p.numel() for p in build(small).parameters())
        ws_small, ws_big = (FamilyPoint("L2", 1.0, s).working_set_bytes for s in (small, big))
        # weights, their gradients and at least one optimizer state, and activations on top
        assert ws_big > ws_small > 3 * weights


@needs_torch
def test_the_working_set_fit_stands_for_the_captures_it_saves():
    """The plan reads a group's working sets from a parabola through three captures: at sizes
    it did not capture it is within the plan's tolerance of a capture."""
    from memprobe.train import family_sweep as FS
    from memprobe.train.spec import peak_live_bytes

    fit = FS.WorkingSetFit()
    for fam in ("cnn", "transformer"):
        group, sizes = FS._groups(fam, 16)[1]
        for i in (len(group) // 5, 3 * len(group) // 4):
            got = fit.bytes(group, sizes, i)
            real = peak_live_bytes(FS.capture_point(group[i]))
            assert abs(got / real - 1) < FS.TOLERANCE - 1, (fam, sizes[i], got, real)


def test_a_parabola_through_three_points_is_exact():
    from memprobe.train.family_sweep import _quadratic_through

    a, b, c = _quadratic_through([2.0, 5.0, 11.0], [3 * 4 - 2 * 2 + 7, 3 * 25 - 2 * 5 + 7, 3 * 121 - 2 * 11 + 7])
    assert (a, b, c) == pytest.approx((3.0, -2.0, 7.0))


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


# ---- the sweep (family_sweep) ----------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("spec", [CNN, GPT, resnet50(2, 96)], ids=["cnn", "transformer", "resnet50"])
def test_the_tiny_instance_runs_the_same_kernels_with_almost_no_work(spec):
    """The instance that scales the call overheads: the same operators in the same order as the
    network at size (a batch of one may leave out a copy), a step of it runs, and its FLOPs are
    a sliver of the full step's."""
    import difflib

    from memprobe.train.family_sweep import capture_point, time_family_steps, tiny_like

    tiny = tiny_like(spec)
    g, gt = capture_point(spec), capture_point(tiny)
    ops, tops = [o.packet for o in g.kernels], [o.packet for o in gt.kernels]
    assert set(tops) == set(ops)
    assert difflib.SequenceMatcher(None, ops, tops, autojunk=False).ratio() > 0.95
    assert sum(o.flops for o in gt.kernels) < 5e-3 * sum(o.flops for o in g.kernels)
    assert all(t > 0 for t in time_family_steps(tiny, 1, 1))


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
    from test_scan_rates import hand_table

    table = hand_table()  # a GPU scan's table holds one "threads_all" entry (scan/rates.stage_gpu_rates)
    table.threads.pop("threads_1")
    table.backend = "cuda"
    return DeviceResult("gpu", "fake", levels=[lv("L1", 256 << 10, 8000.0), lv("L2", 50 << 20, 5000.0),
                                               lv("memory", None, 3000.0)], rates=table)


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
    # the steps timed on the GPU's device; the step captured as the CPU runs it (fake tensors)
    assert {next(m.parameters()).device.type for m in built} == {"meta", "cpu"}
    assert sw["inputs"]["threads_all"]["per_point"][0]["method"] == "captured, rates from the scan"
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


@needs_torch
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
def test_a_tiny_sweep_point_runs_and_records_its_ops(spec, small_cpu_device):
    from memprobe.result import TrainingPoint
    from memprobe.train.family_sweep import FamilyPoint, capture_point, run_family_sweep

    out = run_family_sweep(small_cpu_device, spec.model, budget_s=300.0, steps=2,
                           points=[FamilyPoint("L2", 0.1, spec)], free_bytes=1e9)
    assert out["points"] and not out["skipped"]
    kernels = capture_point(spec).kernels  # every captured kernel predicted, none unmodelled
    for p in out["points"]:
        assert p["model"] == spec.model and p["measured_s"] > 0 and p["predicted_s"] > 0
        assert len(p["ops"]) == len(kernels)
        assert p["ops"][0]["name"] == f"{kernels[0].packet} {kernels[0].phase}"
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


@needs_torch
@pytest.mark.parametrize("spec, params", [(resnet50(1), 25_557_032), (gpt2_small(1), 124_439_808)],
                         ids=["resnet50 (torchvision's 25.6 M)", "gpt2 (124 M, head tied to the token embedding)"])
def test_the_real_architectures_have_their_published_parameter_counts(spec, params):
    """Built on the meta device (no memory, no initialisation), a shared (tied) weight counted
    once; the capture (under fake tensors) holds the same weights."""
    import torch

    from memprobe.train.family_sweep import capture_point
    from memprobe.train.torch_families import build

    assert isinstance(resnet50(1), ResNetSpec) and resnet50(1).model == "cnn"
    with torch.device("meta"):
        net = build(spec)
    assert sum(p.numel() for p in net.parameters()) == params
    if spec.model == "cnn":  # (GPT-2's 1024-long capture is the seed table's test)
        g = capture_point(resnet50(1, 64))
        assert sum(s.nbytes for s in g.storages.values() if s.role == "param") == 4 * params
