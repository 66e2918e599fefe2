"""The training study as a scan stage (after stage 4: result -> **train** -> result -> report).

Runs memprobe.train against the levels and ceilings already in the ScanResult: for each device
with levels (CPU, and the GPU when scanned), the sweep of real training steps beside the model's
prediction, the MNIST-shaped epoch, and the CPU-vs-GPU speed-up; writes `result.training`.
A device whose bandwidth figures are missing gets a warning and no points, never invented
numbers. The library never prints: progress goes through the callback.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from dataclasses import asdict

from memprobe.platform.load import OTHERS_NOTABLE_FRACTION, OthersMeter
from memprobe.profile import PROFILES, Profile, TrainingPlan
from memprobe.result import Code, ModelInputs, ScanResult, TrainingStudy
from memprobe.train.catalog import DEFAULT_STUDY_MODELS, FAMILY_MODELS

ProgressFn = Callable[[str, int, int, str], None]


def _noop(stage: str, done: int, total: int, msg: str = "") -> None:
    return None


def run_training_study(result: ScanResult, device: str = "cpu", plan: TrainingPlan | None = None,
                       framework: str = "numpy", progress: ProgressFn = _noop,
                       budget_s: float | None = None, mnist: bool = True,
                       models: tuple[str, ...] = DEFAULT_STUDY_MODELS, family_budget_s: float | None = None) -> TrainingStudy:
    """Run the study for `device` ("cpu" | "gpu" | "all") against the scan in `result`, store
    it in `result.training` (merged with what is there for other devices: their points, epochs
    and inputs stay, and the GPU-over-CPU rows are paired over the merged points) and return it.

    Devices without levels or bandwidth figures are skipped with a warning in result.warnings.
    `models`: "mlp" (the sweep above), "cnn" and "transformer" (CPU only, through PyTorch:
    without it, one warning says so and the MLP study runs alone; `family_budget_s` per family).
    `plan`: the resolved profile's training plan (None: the default profile's): the schedule, and
    the budgets `budget_s` and `family_budget_s` leave to it; recorded in
    `result.settings.training_plan`. `memprobe train` calls this; `scan_training` calls it at
    the end of a scan."""
    from memprobe.train import model as M
    from memprobe.train import network as N
    from memprobe.train import sweep as S

    t0 = time.perf_counter()
    sched = plan if plan is not None else PROFILES["default"].training
    result.settings.training_plan = sched.record()
    wanted = ["cpu", "gpu"] if device == "all" else [device]
    training: dict[str, Any] = {
        "points": [], "skipped": [], "overhead_s": {}, "gemm_rates": {}, "mnist": {},
        "speedup": [], "gpu_wins_from_width": {}, "claims": [], "summary": {},
        "settings": {"framework": framework, "quick": sched.profile == "quick", "layers": S.LAYERS,
                     "batches": list(sched.batches), "multiples": list(sched.multiples),
                     "steps": sched.steps, "warmup": S.WARMUP, "rounds": sched.rounds,
                     "overhead_width": S.OVERHEAD_WIDTH,
                     "parallel_min_elements": N.PARALLEL_MIN_ELEMENTS},
        "method": ("predicted_s = sum over ops max(FLOPs/P, sum operand bytes/BW(level, kernel)) + "
                   "sum call overheads (each class measured alone, times how much more the step's "
                   "own call sequence costs on one-element operands); level = smallest holding the "
                   "operand's reuse footprint; "
                   "kernel = STREAM kernel with the nearest read:write mix; P per shape class "
                   "measured on isolated in-cache calls; nothing fitted to step times. The sweep's "
                   "steps and inputs are taken in rounds over all its points, inputs pooled by "
                   "median (the CPU partners of GPU points, for the speed-up only, in one block). "
                   "predicted_max_s = max(sum FLOPs/P, sum bytes/BW); predicted_sum_s = their sum; "
                   "spread = (max-min)/median of the timed steps"),
    }
    # the PyTorch families first: after the MLP's NumPy/Numba study in the same process, PyTorch's
    # steps ran 1.0-2.6 s where they ran 0.92-1.0 s before it (GPT-2 small at sequence 128 on the
    # Xeon guest; the cause is not pinned down: docs/validation.md, "Training prediction")
    families = [m for m in models if m in FAMILY_MODELS]
    if families:
        _run_families(result, families, training, progress,
                      family_budget_s if family_budget_s is not None else sched.family_budget_s, wanted)
    ceilings_by_dev: dict[str, Any] = {}
    for dev in (wanted if "mlp" in models else []):
        dres = result.devices.get(dev)
        if dres is None or not dres.levels:
            if device != "all" or dev == "cpu":
                result.warn(Code.TRAINING, f"training study: no {dev} levels in this scan, {dev} skipped")
            continue
        if dev == "gpu" and not _gpu_usable(framework):
            result.warn(Code.TRAINING, "training study: GPU levels present but CuPy/numba.cuda unusable here, GPU skipped")
            continue
        budget = budget_s if budget_s is not None else sched.sweep_budget_s(dev)
        meter = OthersMeter().start()  # the machine's other processes beside the sweep
        try:
            sw = S.run_device_sweep(dres, dev, sched, framework, progress, budget)
        except M.MissingCeiling as exc:
            result.warn(Code.TRAINING, f"training study: {dev} skipped, the prediction needs a ceiling "
                                       f"the scan lacks ({exc})")
            continue
        _merge_sweep(training, sw, meter, f"{dev}_others_percent")
        training["overhead_s"][dev] = sw["overhead_s"]
        training["gemm_rates"][dev] = sw["gemm_rates"]
        training["settings"][f"{dev}_blas_threads_control"] = sw["blas_threads_control"]
        for w in sw["warnings"]:
            result.warn(Code.TRAINING, f"training study ({dev}): {w}")
        if mnist:
            progress("training", 0, 1, f"{dev}: MNIST-shaped epoch")
            # all threads, unless the scan flagged that ceiling (the sweep then kept one thread)
            tkey = "threads_all" if "threads_all" in sw["overhead_s"] else "threads_1"
            nthr = (N.max_threads() if tkey == "threads_all" else 1) if dev == "cpu" else 0
            ceil = M.ceilings_from_device(dres, tkey, max(nthr, 1), _rates_back(sw["gemm_rates"][tkey]),
                                          ModelInputs.from_overhead_dict(sw["overhead_s"][tkey], max(nthr, 1)))
            ceilings_by_dev[dev] = ceil
            limit = sched.mnist_limit_s
            if dev == "cpu":
                with N.cpu_threads(nthr):
                    training["mnist"][dev] = S.run_mnist_epoch("cpu", framework, nthr, ceil, limit_s=limit)
            else:
                training["mnist"][dev] = S.run_mnist_epoch("gpu", framework, 0, ceil, limit_s=limit)
            if not training["mnist"][dev]["complete"]:
                result.warn(Code.TRAINING, f"training study: the {dev} MNIST-shaped epoch passed {limit:.0f} s "
                                           f"(a busy machine?): stopped early, epoch time extrapolated")
    _warn_replaced_ceilings(result, wanted)
    # keep what an earlier call stored for other devices and models, so the pairing below sees them
    old = result.training
    if device != "all" or "mlp" not in models:
        training["points"] = [asdict(p) for p in old.points
                              if p.device not in wanted or p.model not in models] + training["points"]
        for dev, epoch in old.mnist.items():
            training["mnist"].setdefault(dev, asdict(epoch))
        for key, fam_inputs in old.family_inputs.items():  # ("cpu/cnn"): kept unless that family ran again
            if key.split("/", 1)[1] not in models:
                training.setdefault("family_inputs", {})[key] = {tk: asdict(v) for tk, v in fam_inputs.items()}
        for dev, inputs in old.inputs.items():
            if dev not in wanted or "mlp" not in models:
                training["overhead_s"][dev] = inputs.overhead_s
                training["gemm_rates"][dev] = ({tk: asdict(r) for tk, r in inputs.gemm_rates.items()}
                                               if inputs.gemm_rates is not None else None)
        training["skipped"] = [asdict(p) for p in old.skipped
                               if p.device not in wanted or p.model not in models] + training["skipped"]
    mlp_pts = [p for p in training["points"] if p.get("model", "mlp") == "mlp"]
    cpu_pts = [p for p in mlp_pts if p["device"] == "cpu"]
    gpu_pts = [p for p in mlp_pts if p["device"] == "gpu"]
    if cpu_pts and gpu_pts:
        # the GPU sweep's widths come from the GPU's capacities: time the CPU (all threads) at
        # those widths too, so every GPU point has a partner
        have = {(p["width"], p["batch"]) for p in cpu_pts if p["threads"] == "threads_all"}
        nthr = N.max_threads()
        for g in gpu_pts:
            if (g["width"], g["batch"]) in have:
                continue
            shape = N.NetShape.square(g["width"], g["layers"], g["batch"])
            if M.working_set_bytes(shape) > 2 << 30:
                continue
            with N.cpu_threads(nthr):
                samples = S.measure_point(shape, "cpu", framework, nthr, steps=S.STEPS, warmup=1)
            cpu_pts.append({"width": g["width"], "batch": g["batch"], "threads": "threads_all",
                            "measured_s": sorted(samples)[len(samples) // 2]})
        training["speedup"] = S.pair_speedups(cpu_pts, gpu_pts)
        training["gpu_wins_from_width"] = S.gpu_wins_from(training["speedup"])
    training["claims"] = S.judge_claims(training["mnist"].get("cpu"), training["mnist"].get("gpu"),
                                        training["speedup"])
    training["summary"] = S.summarize(mlp_pts) if mlp_pts else {}
    from memprobe.train.family_sweep import summarize_family

    for fam in FAMILY_MODELS:
        if any(p.get("model") == fam for p in training["points"]):
            training["summary"].update(summarize_family(training["points"], fam))
    training["summary"]["study_s"] = round(time.perf_counter() - t0, 2)
    result.training = TrainingStudy.from_parts(training)
    return result.training


def _run_families(result: ScanResult, families: list[str], training: dict[str, Any], progress: ProgressFn,
                  budget_s: float, wanted: list[str]) -> None:
    """The CNN and transformer sweeps into `training` (points, skipped, inputs) on the `wanted`
    devices: the CPU, and the GPU when the scan has GPU levels and PyTorch sees CUDA (a line
    says why not otherwise)."""
    from memprobe.train import model as M
    from memprobe.train.family_sweep import run_family_sweep
    from memprobe.train.torch_families import cuda_missing, torch_missing

    why = torch_missing()
    if why is not None:
        result.warn(Code.TRAINING, f"training study: {', '.join(families)} skipped: {why}")
        return
    devices = []
    for dev in wanted:
        dres = result.devices.get(dev)
        if dres is None or not dres.levels:
            if dev == "cpu" or len(wanted) == 1:
                result.warn(Code.TRAINING, f"training study: no {dev} levels in this scan, {', '.join(families)} "
                                           f"skipped on the {dev}")
            continue
        if dev == "gpu" and (no_cuda := cuda_missing()) is not None:
            result.warn(Code.TRAINING, f"training study: {', '.join(families)} not run on the GPU: {no_cuda}")
            continue
        devices.append((dev, dres))
    training.setdefault("family_inputs", {})
    training["settings"]["families_method"] = (
        f"{', '.join(FAMILY_MODELS)} (PyTorch): each point's training step captured from PyTorch's dispatcher "
        "(forward, loss, backward, the optimizer's step, as PyTorch runs them) and predicted by the one "
        "predictor (train/predict.py): per kernel max(work/rate + excess + cross-core, bytes/BW(level)) "
        "+ its fresh-page faults + its call, plus autograd's start; on the CPU the rate of each distinct "
        "kernel measured here on that kernel replayed alone at its captured shape (page faults and its "
        "call taken out), on a GPU read from the GPU scan's rate table; the calls scaled by what they "
        "cost in a real step of the same network at its least sizes; excess = the inputs' bytes at their "
        "level's bandwidth less at the level the replay held them in; median of the timed steps")
    for dev, dres in devices:
        for fam in families:
            meter = OthersMeter().start()
            try:
                sw = run_family_sweep(dres, fam, progress, budget_s, device=dev)
            except M.MissingCeiling as exc:
                result.warn(Code.TRAINING, f"training study: {fam} skipped on the {dev}, the prediction needs a "
                                           f"ceiling the scan lacks ({exc})")
                continue
            except (RuntimeError, ValueError, MemoryError) as exc:  # PyTorch refused a shape or ran out
                result.warn(Code.TRAINING, f"training study: {fam} stopped on the {dev}, PyTorch failed: {exc}")
                continue
            _merge_sweep(training, sw, meter, f"{dev}_{fam}_others_percent")
            training["family_inputs"][f"{dev}/{fam}"] = sw["inputs"]


def _warn_replaced_ceilings(result: ScanResult, wanted: list[str]) -> None:
    """One warning per flagged bandwidth the study's model read as its physical bound instead
    (model.level_bandwidths), so a reader sees which ceilings were not taken as measured."""
    from memprobe.train import model as M

    for dev in wanted:
        dres = result.devices.get(dev)
        if dres is None or not dres.levels:
            continue
        for tkey in ("threads_1", "threads_all"):
            try:
                notes = M.level_bandwidths(dres, tkey)[1]
            except M.MissingCeiling:
                continue
            for note in notes:
                result.warn(Code.TRAINING, f"training study: {note}")


def _merge_sweep(training: dict[str, Any], sw: dict[str, Any], meter: OthersMeter, others_key: str) -> None:
    """A sweep's points and skipped points into the study, each miss given its likely cause
    from the share of a CPU the machine's other processes used beside it (recorded too)."""
    from memprobe.train import model as M

    share = meter.share()
    others = None if share is None else round(100 * share, 1)
    training["settings"][others_key] = others
    for p in sw["points"]:
        p["miss_cause"] = M.miss_cause(p.get("error"), p.get("bound"), p.get("overhead_s"), p["predicted_s"],
                                       others, 100 * OTHERS_NOTABLE_FRACTION)
    training["points"] += sw["points"]
    training["skipped"] += sw["skipped"]


def _gpu_usable(framework: str) -> bool:
    from memprobe.train import network as N

    return framework != "numpy" or N.cuda_arrays_usable()


def _rates_back(stored: Any) -> dict[str, dict[tuple[int, int], float]]:
    """The rates table as the model reads it (FLOP/s, (batch, width) keys) from its stored form
    (result.MlpRates, or the sweep's dict)."""
    from memprobe.train.sweep import rates_from_json

    return rates_from_json(stored["rates_gflops"] if isinstance(stored, dict) else stored.rates_gflops)


def seed_table_torch_rows(result: ScanResult, progress: ProgressFn = _noop) -> list[dict[str, Any]] | None:
    """The seed table's PyTorch rows (ResNet-50, GPT-2 small), measured now: on the CPU, and on
    the GPU when the scan has GPU levels and PyTorch sees CUDA. `memprobe train` makes them
    before the MLP study (see run_training_study) and hands them to run_seed_table. None, with a
    warning, without PyTorch or CPU levels."""
    from memprobe.train import model as M
    from memprobe.train import seed_table as ST
    from memprobe.train.torch_families import cuda_missing, torch_missing

    dres = result.devices.get("cpu")
    why = torch_missing()
    if dres is None or not dres.levels or why is not None:
        result.warn(Code.TRAINING, f"seed table skipped: {why or 'no cpu levels in this scan'}")
        return None
    gres = result.devices.get("gpu")
    runs = [("cpu", dres)] + ([("gpu", gres)] if gres is not None and gres.levels and cuda_missing() is None else [])
    rows: list[dict[str, Any]] = []
    for dev, res in runs:
        try:
            rows += ST.torch_rows(res, progress, device=dev)
        except M.MissingCeiling as exc:
            result.warn(Code.TRAINING, f"seed table ({dev}) skipped, the prediction needs a ceiling the scan "
                                       f"lacks ({exc})")
        except (RuntimeError, ValueError, MemoryError) as exc:  # PyTorch refused a shape or ran out
            result.warn(Code.TRAINING, f"seed table ({dev}) skipped, PyTorch failed: {exc}")
    return rows if any(r["device"] == "cpu" for r in rows) else None


def _mlp_ceilings(result: ScanResult, dev: str, epoch: dict[str, Any] | None) -> Any:
    """The MLP study's ceilings for the MNIST row's bound (None when the study lacks them)."""
    from memprobe.train import model as M

    dres = result.devices.get(dev)
    if epoch is None or dres is None:
        return None
    tkey = "threads_all" if dev == "gpu" or epoch["threads"] > 1 else "threads_1"
    inputs = result.training.inputs.get(dev)
    if inputs is None:
        return None
    try:
        return M.ceilings_from_device(dres, tkey, max(epoch["threads"], 1),
                                      _rates_back((inputs.gemm_rates or {})[tkey]),
                                      ModelInputs.from_overhead_dict((inputs.overhead_s or {})[tkey],
                                                                     max(epoch["threads"], 1)))
    except (KeyError, TypeError, M.MissingCeiling):
        return None  # the row keeps its times; its bound stays blank


def run_seed_table(result: ScanResult, progress: ProgressFn = _noop,
                   torch_rows: list[dict[str, Any]] | None = None) -> None:
    """The seed table (`train/seed_table.py`) into `result.training.seed_table`: the MNIST row
    from the study's epoch (run the MLP first), ResNet-50 and GPT-2 small measured and projected
    now (30-90 s here) unless `torch_rows` holds them; the GPU half the same way on a scan with
    a GPU (rows that say why where it cannot run). Without PyTorch or CPU levels, a warning says
    why and no row is made."""
    from pydantic import TypeAdapter

    from memprobe.result import SeedRow
    from memprobe.train import model as M
    from memprobe.train import seed_table as ST
    from memprobe.train.torch_families import cuda_missing, torch_missing

    dres = result.devices.get("cpu")
    why = torch_missing()
    if dres is None or not dres.levels or why is not None:
        if torch_rows is None:  # (seed_table_torch_rows warned already)
            result.warn(Code.TRAINING, f"seed table skipped: {why or 'no cpu levels in this scan'}")
        return
    tr = result.training
    epochs = {dev: asdict(tr.mnist[dev]) if dev in tr.mnist else None for dev in ("cpu", "gpu")}
    cpu_rows = None if torch_rows is None else [r for r in torch_rows if r["device"] == "cpu"]
    try:
        rows = ST.build_seed_table(dres, epochs["cpu"], _mlp_ceilings(result, "cpu", epochs["cpu"]), progress,
                                   measured=cpu_rows)
    except M.MissingCeiling as exc:
        result.warn(Code.TRAINING, f"seed table skipped, the prediction needs a ceiling the scan lacks ({exc})")
        return
    if "gpu" in result.devices:
        gpu_rows = [r for r in torch_rows or [] if r["device"] == "gpu"]
        rows.append(ST.mnist_row(epochs["gpu"], _mlp_ceilings(result, "gpu", epochs["gpu"]), "gpu"))
        rows += gpu_rows or ST.gpu_note_rows(result, cuda_missing() or "the seed table's GPU rows did not run",
                                             ("resnet50_epoch", "gpt2_finetune"))
    tr.seed_table = TypeAdapter(list[SeedRow]).validate_python(rows)
    if "gpu" not in result.devices:
        tr.settings["seed_table_gpu"] = "no GPU in this scan: the claims' RTX 4090 column is not tested here"


def scan_training(options: Any, progress: ProgressFn, result: ScanResult, *,
                  profile: Profile | None = None) -> bool:
    """The scan's training stage: every device in the result that has levels, by `profile`'s
    training plan (None: resolved from the options, the default profile's for options without
    one), each CNN or transformer sweep within the plan's scan budget. Returns False only when
    the study itself failed (a warning says why); a device lacking ceilings is a warning, not a
    failure."""
    if profile is None:
        profile = options.profile() if hasattr(options, "profile") else PROFILES["default"]
    plan = profile.training
    devs = [k for k, d in result.devices.items() if d.levels]
    if not devs:
        result.warn(Code.TRAINING, "training study: no device with inferred levels, skipped")
        return True
    progress("training", 0, 1, "training study")
    try:
        run_training_study(result, device="all" if len(devs) > 1 else devs[0],
                           plan=plan, progress=progress,
                           models=tuple(getattr(options, "train_models", None) or DEFAULT_STUDY_MODELS),
                           family_budget_s=plan.scan_family_budget_s)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing study must not lose the scan
        result.warn(Code.STAGE_FAILED, f"training study failed: {exc.__class__.__name__}: {exc}", "training")
        return False
    progress("training", 1, 1, "training study")
    return True
