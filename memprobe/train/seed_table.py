"""The seed table (beside stage 4: result -> **train** -> report): the three tasks of the
CPU-against-GPU table people quote, projected for this machine from its scan.

- `mnist_epoch`: the MLP's MNIST-shaped epoch, already run by the study (`sweep.run_mnist_epoch`):
  its measured epoch is the check, its op-model prediction the projection.
- `resnet50_epoch`: ResNet-50 (`families.resnet50`) for one epoch of ImageNet-1k at 224x224,
  SGD with momentum.
- `gpt2_finetune`: GPT-2 small (`families.gpt2_small`) fine-tuned with AdamW on a million tokens
  in sequences of 1024.

For the two PyTorch tasks on the CPU: the check's real steps are timed (median); the check's
step and the full-size step are captured from PyTorch's dispatcher under fake tensors (the
full size allocates nothing); the check's inputs are measured here as `memprobe predict`
measures them (`inputs.measure_step_inputs`: each distinct kernel replayed alone at its
shape, the per-step terms), and the full size's are projected from them
(`inputs.projected_inputs`: each full-size kernel at its check counterpart's rate, so the
full step is never replayed). `predicted_s` = `predict.predict` on the full-size step x the
task's steps; `check_predicted_s` the same predictor on the check's. Nothing is fitted to a
step time; the claimed figures are the only constants, and they are labelled as claims.
Nothing prints.

The GPU half (the claims' RTX 4090 column): on a scan with GPU levels and a CUDA build of
PyTorch, the same rows on the GPU (the MNIST row from the study's GPU epoch, the PyTorch rows
through `torch_families.on_device` against the GPU's levels, their rates read from the GPU
scan's rate table); without them, rows that say why.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable

from memprobe.train import model as M
from memprobe.train.families import CnnSpec, TransformerSpec, gpt2_small, resnet50

ProgressFn = Callable[[str, int, int, str], None]

# The quoted table, as claimed (never a measurement): seconds on an 8-core CPU and an RTX 4090.
CLAIMS = {
    "mnist_epoch": {"cpu_s": 40.0, "gpu_s": 2.0},
    "resnet50_epoch": {"cpu_s": 3 * 3600.0, "gpu_s": 15 * 60.0},
    "gpt2_finetune": {"cpu_s": 24 * 3600.0, "gpu_s": 2 * 3600.0},
}
CLAIMED_HARDWARE = {"cpu": "8-core CPU (claimed)", "gpu": "RTX 4090 (claimed)"}

# the full-size tasks
IMAGENET_TRAIN_IMAGES = 1_281_167  # ImageNet-1k's training set
RESNET_BATCH = 32  # images per step (torchvision's reference recipe, per device)
GPT2_TOKENS = 1_000_000
GPT2_SEQ = 1024
GPT2_BATCH = 8  # sequences per step

# the scaled-down checks: the real architectures, at sizes this class of machine runs in seconds
RESNET_CHECK = (4, 128)  # batch, resolution
GPT2_CHECK = (1, 128)  # batch, sequence
CHECK_STEPS = 5
# the projection is for thousands of steps, so the check times steady steps: the first ones
# after a build run slower while AdamW allocates its states and glibc's heap grows to the
# step's size and its mmap threshold rises (GPT-2 small at sequence 128 on the Xeon guest:
# 1.3-2.2 s for up to five steps, then 0.92-1.06 s)
CHECK_WARMUP = 3


def _noop(stage: str, done: int, total: int, msg: str = "") -> None:
    return None


def bound_of(pred: M.Prediction) -> tuple[str, dict[str, float]]:
    """What bounds a predicted step, from the op model's breakdown: each op's roofline time goes
    to compute or to the level its traffic mostly comes from, every call overhead to "overhead";
    the largest share, and all shares (fractions of the predicted step)."""
    shares: dict[str, float] = {"overhead": pred.overhead_s}
    for p in pred.ops:
        k = M.work_bound(p)
        shares[k] = shares.get(k, 0.0) + p.roofline_s
    total = sum(shares.values()) or 1.0
    shares = {k: v / total for k, v in shares.items() if v > 0}
    return max(shares, key=shares.get), shares


def bound_sentence(task: str, bound: str, shares: dict[str, float]) -> str:
    """One sentence for the report: what bounds the task here, with the op model's shares."""
    what = {"compute": "compute (the GEMMs and convolutions at their measured rates)",
            "overhead": "per-call overhead"}.get(bound, f"{bound} bandwidth")
    rest = ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]) if k != bound)
    return (f"{task} is bound here by {what}: {shares[bound]:.0%} of the predicted step"
            + (f" ({rest})." if rest else "."))


def time_check(spec: CnnSpec | TransformerSpec, steps: int = CHECK_STEPS,
               warmup: int = CHECK_WARMUP) -> list[float]:
    from memprobe.train.family_sweep import time_family_steps

    return time_family_steps(spec, steps, warmup)


def captured_bound_of(pred: Any) -> tuple[str, dict[str, float]]:
    """bound_of for `predict.predict`'s answer: each op's work (its time less its call) goes to
    compute or to the level most of its operands come from, every call (and autograd's start)
    to "overhead"; the largest share, and all shares (fractions of the predicted step)."""
    shares: dict[str, float] = {"overhead": pred.overhead_s}
    for o in pred.ops:
        work = o.time_s - o.overhead_s
        if o.compute_s + o.excess_s + o.cross_core_s >= o.memory_s:
            k = "compute"
        else:
            names = list(o.levels.values())
            k = max(set(names), key=names.count) if names else "memory"
        shares[k] = shares.get(k, 0.0) + work
    total = sum(shares.values()) or 1.0
    shares = {k: v / total for k, v in shares.items() if v > 0}
    return max(shares, key=shares.get), shares


def family_row(task: str, full: CnnSpec | TransformerSpec, full_steps: int, check: CnnSpec | TransformerSpec,
               device_result: Any, workload: str, check_text: str, steps: int = CHECK_STEPS,
               device: str = "cpu") -> dict[str, Any]:
    """One PyTorch task's row on the CPU (all threads) or the GPU, through capture: the check's
    real steps timed first, then both steps captured under fake tensors (the full size allocates
    nothing). On the CPU the check's inputs are measured here (`inputs.measure_step_inputs`: its
    distinct kernels replayed at their shapes) and the full size's projected from them
    (`inputs.projected_inputs`: each full-size kernel at its check counterpart's rate); on a GPU
    both are read from the GPU scan's rate table (`family_sweep.step_inputs`). The calls are
    scaled as in a real step of the network at its least sizes (`family_sweep.tiny_call_scale`),
    and `predict.predict` runs on both."""
    from memprobe.train import network as N
    from memprobe.train import predict as P
    from memprobe.train import torch_families as TF
    from memprobe.train.family_sweep import capture_point, step_inputs, tiny_call_scale
    from memprobe.train.inputs import projected_inputs, with_call_scale

    nthr = N.max_threads() if device == "cpu" else 1
    tkey = "threads_all" if nthr > 1 or device == "gpu" else "threads_1"
    with N.cpu_threads(nthr) if device == "cpu" else TF.on_device(TF.GPU_DEVICE):
        # the check's steps first: measuring rates leaves the allocator with freed tensors,
        # and GPT-2 small's check steps ran 2x slower after its kernels were replayed
        samples = time_check(check, steps)
        g_check, g_full = capture_point(check), capture_point(full)
        ceilings = M.ceilings_from_device(device_result, tkey, nthr, {})
        inputs, missing = step_inputs(g_check, device_result, tkey, nthr, device=device)
        scale = tiny_call_scale(check, inputs, ceilings, device_result, tkey, nthr, device=device)
        inputs = with_call_scale(inputs, scale)
        if device == "gpu":
            full_inputs, missing_full = step_inputs(g_full, device_result, tkey, nthr, device=device)
            full_inputs = with_call_scale(full_inputs, scale)
            missing = sorted(set(missing or []) | set(missing_full or []))
        else:
            full_inputs = projected_inputs(g_full, g_check, inputs)
    pred_check = P.predict(g_check, ceilings, inputs)
    pred_full = P.predict(g_full, ceilings, full_inputs)
    meas = statistics.median(samples)
    bound, shares = captured_bound_of(pred_full)
    unmod = sum(u.count for u in pred_full.unmodelled)
    source = (f"rates of the check's {len(inputs.rates)} distinct kernels" if device == "cpu"
              else "rates from the GPU scan's table")
    return {"task": task, "device": device, "model": full.model, "workload": workload,
            "predicted_s": pred_full.predicted_s * full_steps,
            "check": f"{check_text}, median of {len(samples)} steps",
            "check_measured_s": meas, "check_predicted_s": pred_check.predicted_s,
            "check_error": pred_check.predicted_s / meas - 1,
            "claimed_s": CLAIMS[task][f"{device}_s"], "claimed_hardware": CLAIMED_HARDWARE[device],
            "bound": bound, "bound_text": bound_sentence(task, bound, shares),
            "threads": nthr if device == "cpu" else None,
            "note": (f"predicted step {pred_full.predicted_s:.3g} s x {full_steps} steps; captured steps "
                     f"({len(g_full.kernels)} kernels, {source}; calls x{scale:.2f} as in a tiny step; "
                     f"coverage {pred_full.coverage:.0%}" + (f", {unmod} unmodelled" if unmod else "")
                     + (f"; partial, the scan lacks: {'; '.join(missing)}" if missing else "") + ")")}


def resnet50_row(device_result: Any, steps: int = CHECK_STEPS, check: tuple[int, int] = RESNET_CHECK,
                 device: str = "cpu") -> dict[str, Any]:
    n_steps = math.ceil(IMAGENET_TRAIN_IMAGES / RESNET_BATCH)
    b, r = check
    return family_row("resnet50_epoch", resnet50(RESNET_BATCH), n_steps, resnet50(b, r), device_result,
                      f"ResNet-50 (25.6 M parameters), one epoch of ImageNet-1k ({IMAGENET_TRAIN_IMAGES:,} "
                      f"images at 224x224), batch {RESNET_BATCH}, SGD with momentum: {n_steps:,} steps",
                      f"ResNet-50 at batch {b}, {r}x{r} px", steps, device)


def gpt2_row(device_result: Any, steps: int = CHECK_STEPS, check: tuple[int, int] = GPT2_CHECK,
             device: str = "cpu") -> dict[str, Any]:
    n_steps = math.ceil(GPT2_TOKENS / (GPT2_BATCH * GPT2_SEQ))
    b, t = check
    return family_row("gpt2_finetune", gpt2_small(GPT2_BATCH, GPT2_SEQ), n_steps, gpt2_small(b, t), device_result,
                      f"GPT-2 small (124 M parameters, tied head) fine-tuned on {GPT2_TOKENS:,} tokens in "
                      f"sequences of {GPT2_SEQ}, batch {GPT2_BATCH}, AdamW: {n_steps} steps",
                      f"GPT-2 small at batch {b}, sequence {t}", steps, device)


def mnist_row(epoch: dict[str, Any] | None, ceilings: M.Ceilings | None, device: str = "cpu") -> dict[str, Any]:
    """The MNIST row from the study's epoch: the whole epoch ran, so its steps are the check."""
    from memprobe.train import network as N
    from memprobe.train import sweep as S

    row: dict[str, Any] = {"task": "mnist_epoch", "device": device, "model": "mlp",
                           "workload": f"MLP {'-'.join(map(str, S.MNIST_DIMS))}, one epoch of {S.MNIST_SAMPLES:,} "
                                       f"MNIST-shaped images, batch {S.MNIST_BATCH}, SGD",
                           "claimed_s": CLAIMS["mnist_epoch"][f"{device}_s"],
                           "claimed_hardware": CLAIMED_HARDWARE[device]}
    if not epoch or epoch.get("predicted_epoch_s") is None:
        row["note"] = "no MNIST-shaped epoch in this study: run the MLP (memprobe train --model mlp or all)"
        return row
    steps = epoch["steps"]
    row.update({"predicted_s": epoch["predicted_epoch_s"], "threads": epoch["threads"] if device == "cpu" else None,
                "check": f"the whole epoch, run ({steps} steps{'' if epoch['complete'] else ', stopped early'})",
                "check_measured_s": epoch["epoch_s"] / steps, "check_predicted_s": epoch["predicted_epoch_s"] / steps,
                "check_error": epoch["predicted_epoch_s"] / epoch["epoch_s"] - 1})
    if ceilings is not None:
        disp = M.cpu_dispatch(epoch["threads"], N.PARALLEL_MIN_ELEMENTS) if device == "cpu" else M.gpu_dispatch
        pred = M.predict_step(N.NetShape(S.MNIST_DIMS, S.MNIST_BATCH), ceilings, disp, True)
        bound, shares = bound_of(pred)
        row.update({"bound": bound, "bound_text": bound_sentence("mnist_epoch", bound, shares)})
    return row


def gpu_note_rows(result: Any, why: str, tasks: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """On a scan with a GPU: rows of its half that could not be measured, the claims with `why`."""
    if "gpu" not in getattr(result, "devices", {}):
        return []
    return [{"task": t, "device": "gpu", "model": m, "workload": "as the CPU row",
             "claimed_s": CLAIMS[t]["gpu_s"], "claimed_hardware": CLAIMED_HARDWARE["gpu"],
             "note": f"not measured on the GPU: {why}"}
            for t, m in (("mnist_epoch", "mlp"), ("resnet50_epoch", "cnn"), ("gpt2_finetune", "transformer"))
            if tasks is None or t in tasks]


def build_seed_table(device_result: Any, mnist_epoch: dict[str, Any] | None, mlp_ceilings: M.Ceilings | None,
                     progress: ProgressFn = _noop, steps: int = CHECK_STEPS,
                     measured: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The CPU rows: MNIST from the study's epoch, ResNet-50 and GPT-2 measured and projected now
    (or `measured`: those two rows made earlier by torch_rows)."""
    return [mnist_row(mnist_epoch, mlp_ceilings),
            *(measured if measured is not None else torch_rows(device_result, progress, steps))]


def torch_rows(device_result: Any, progress: ProgressFn = _noop, steps: int = CHECK_STEPS,
               device: str = "cpu") -> list[dict[str, Any]]:
    """The ResNet-50 and GPT-2 small rows on `device`, measured and projected now."""
    rows = []
    for k, (name, fn) in enumerate((("ResNet-50", resnet50_row), ("GPT-2 small", gpt2_row))):
        progress("seed table", k + 1, 3, f"{name} ({device}): rates, then the check's steps")
        t0 = time.perf_counter()
        row = fn(device_result, steps, device=device)
        row["note"] += f"; inputs and check took {time.perf_counter() - t0:.1f} s"
        rows.append(row)
    progress("seed table", 3, 3, "done")
    return rows
