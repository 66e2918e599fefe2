"""The CNN and transformer sweeps (beside stage 4: result -> **train** -> report).

Per family: sizes (channels and resolution, or width and sequence length) chosen from *this
scan's* inferred capacities so that the step's working set (the most bytes the captured step
holds at once, `spec.peak_live_bytes`) runs from inside L2 to several times the last cache, at
batch 1, 16 and 64, on one thread and on all. Each point's step is captured from PyTorch's
dispatcher (`capture.capture_step` on the network `torch_families` builds, with the family's
optimizer) and predicted by the one predictor (`predict.predict`). Its inputs: on the CPU,
measured here the way `memprobe predict` measures them (`inputs.measure_step_inputs`: every
distinct kernel replayed alone, the step's page faults, autograd's start, the optimizer's
calls; rates shared by the points of one sweep); on a GPU, read from the GPU scan's rate table
(`rates_from_scan`, as `memprobe predict --on` reads a scan), which the scan measured through
PyTorch on CUDA. Then a few real training steps are timed (median), the prediction beside them
with its per-op breakdown. A time budget bounds the sweep; points it leaves out are listed with
why. Nothing prints.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from memprobe.profile import PROFILES
from memprobe.train import capture as C
from memprobe.train import model as M
from memprobe.train import network as N
from memprobe.train.families import CnnSpec, ResNetSpec, TransformerSpec

ProgressFn = Callable[[str, int, int, str], None]

BATCHES = (1, 16, 64)
# (level index from the nearest cache: 1 is L2, -1 the last cache; multiple of its capacity)
TARGETS = ((1, 0.5), (-1, 0.5), (-1, 2.0), (-1, 4.0))
CNN_CHANNELS = (64, 32, 16)  # the widest that reaches the target within TOLERANCE is taken
TRANSFORMER_WIDTHS = (128, 64, 32)
TOLERANCE = 1.3  # a size's working set within this factor of its target
STEPS = 5
WARMUP = 2
TINY_STEPS = 15  # steps of the tiny instance that scales the call overheads (median)

def _noop(stage: str, done: int, total: int, msg: str = "") -> None:
    return None


@dataclass
class FamilyPoint:
    level: str
    capacity_multiple: float
    spec: CnnSpec | TransformerSpec
    graph: C.StepGraph | None = None  # the point's captured step (captured when first read)

    def captured(self) -> C.StepGraph:
        if self.graph is None:
            self.graph = capture_point(self.spec)
        return self.graph

    @functools.cached_property
    def working_set_bytes(self) -> int:
        """The most bytes the captured step holds at once (`spec.peak_live_bytes`), once."""
        from memprobe.train.spec import peak_live_bytes

        return peak_live_bytes(self.captured())


def _groups(family: str, batch: int) -> list[tuple[list[CnnSpec | TransformerSpec], list[int]]]:
    """The candidate specs of one batch, a group per channel count (width), widest first, each
    with the size (resolution, sequence length) that sets its working set."""
    if family == "cnn":
        sizes = list(range(4, 257, 2))
        return [([CnnSpec(batch, c, hw) for hw in sizes], sizes) for c in CNN_CHANNELS]
    sizes = list(range(4, 1025, 4))
    return [([TransformerSpec(batch, t, d) for t in sizes], sizes) for d in TRANSFORMER_WIDTHS]


class WorkingSetFit:
    """The working set of a group's candidates, from three captures: a step's peak live bytes are
    its weights, states and inputs plus activations that grow with the image's area or, in a
    transformer, with the sequence and its attention matrix (its square), so a quadratic in the
    size through three captured points stands for the captures the plan would otherwise need
    (hundreds); the chosen spec is then captured and its own figure recorded."""

    def __init__(self) -> None:
        self._fits: dict[tuple[Any, ...], tuple[float, float, float]] = {}

    def bytes(self, group: list[CnnSpec | TransformerSpec], sizes: list[int], i: int) -> float:
        from memprobe.train.spec import peak_live_bytes

        key = (group[0], len(group))
        if key not in self._fits:
            picks = (0, len(group) // 2, len(group) - 1)
            xs = [float(sizes[j]) for j in picks]
            ys = [float(peak_live_bytes(capture_point(group[j]))) for j in picks]
            self._fits[key] = _quadratic_through(xs, ys)
        a, b, c = self._fits[key]
        return max(1.0, a * sizes[i] ** 2 + b * sizes[i] + c)


def _quadratic_through(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """(a, b, c) of the parabola a x^2 + b x + c through three points (Lagrange's form)."""
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    d0, d1, d2 = (x0 - x1) * (x0 - x2), (x1 - x0) * (x1 - x2), (x2 - x0) * (x2 - x1)
    a = y0 / d0 + y1 / d1 + y2 / d2
    b = -(y0 * (x1 + x2) / d0 + y1 * (x0 + x2) / d1 + y2 * (x0 + x1) / d2)
    c = y0 * x1 * x2 / d0 + y1 * x0 * x2 / d1 + y2 * x0 * x1 / d2
    return a, b, c


def spec_for(family: str, batch: int, target_bytes: float, fit: WorkingSetFit | None = None
             ) -> CnnSpec | TransformerSpec:
    """The spec whose working set is nearest `target_bytes`: the widest channel count (width)
    that gets within TOLERANCE of it, the resolution (sequence length) chosen; else the nearest."""
    fit = fit or WorkingSetFit()
    best = None
    for group, sizes in _groups(family, batch):
        dist = [abs(math.log(fit.bytes(group, sizes, i) / target_bytes)) for i in range(len(group))]
        i = min(range(len(group)), key=dist.__getitem__)
        if dist[i] <= math.log(TOLERANCE):
            return group[i]
        if best is None or dist[i] < best[0]:
            best = (dist[i], group[i])
    return best[1]


def plan_family(family: str, capacities: list[tuple[str, int]], batches: tuple[int, ...] = BATCHES,
                max_working_set_bytes: float | None = None) -> list[FamilyPoint]:
    """Points of one family: per batch, one per target of TARGETS (distinct specs only), each
    with its step captured."""
    out: list[FamilyPoint] = []
    targets = []
    for idx, m in TARGETS:
        if -len(capacities) <= idx < len(capacities):
            name, cap = capacities[idx]
            targets.append((name, cap, m))
    fit = WorkingSetFit()
    for b in batches:
        seen = set()
        for name, cap, m in targets:
            if max_working_set_bytes and m * cap > max_working_set_bytes:
                continue
            s = spec_for(family, b, m * cap, fit)
            if s in seen:
                continue
            seen.add(s)
            fp = FamilyPoint(name, 0.0, s)
            fp.capacity_multiple = round(fp.working_set_bytes / cap, 3)
            out.append(fp)
    return out


def time_family_steps(spec: CnnSpec | TransformerSpec, steps: int = STEPS, warmup: int = WARMUP) -> list[float]:
    """Seconds per real training step (forward, backward, optimizer) after `warmup` steps."""
    from memprobe.train import torch_families as TF

    model, x, loss_fn = TF.step_parts(spec)
    model.train()
    opt = TF.optimizer(spec, model)
    return time_steps(lambda: C.run_step(model, x, loss_fn, opt), steps, warmup)


def time_steps(step: Callable[[], Any], steps: int = STEPS, warmup: int = WARMUP) -> list[float]:
    """Seconds per call of `step` (one training step) after `warmup` untimed calls, each call
    waiting for the device."""
    from memprobe.train import torch_families as TF

    for _ in range(warmup):
        step()
    out = []
    for _ in range(steps):
        TF.synchronize()
        t0 = time.perf_counter()
        step()
        TF.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def capture_point(spec: CnnSpec | TransformerSpec) -> C.StepGraph:
    """The point's training step captured under fake tensors (nothing allocated): the network
    `torch_families.step_parts` builds, with the family's optimizer. Always as the CPU runs it,
    also for a GPU point: the GPU's inputs are read from its scan's rate table by op class, as
    `memprobe predict --on` reads a GPU scan for a step captured here."""
    from memprobe.train import torch_families as TF

    with TF.on_device("cpu"):
        return C.capture_step(lambda: TF.step_parts(spec), optimizer=TF.optimizer_name(spec), name=spec.model,
                              batch=spec.batch)


@dataclass
class CapturedPrediction:
    """`predict.predict`'s answer for one point, with the totals a sweep point records."""

    pred: Any  # predict.Prediction
    graph: C.StepGraph
    inputs: Any  # predict.StepInputs
    call_scale: float | None = None  # inputs.in_step_call_scale, applied to `inputs`' calls
    missing: list[str] | None = None  # what the scan's rate table lacked (inputs from a scan)

    @property
    def predicted_s(self) -> float:
        return self.pred.predicted_s

    @property
    def roofline_s(self) -> float:
        """The ops' work (what is not their calls): faults included."""
        return sum(o.time_s - o.overhead_s for o in self.pred.ops)

    def record(self) -> dict[str, Any]:
        """What the point keeps of its inputs (result.PointInputs' fields): the capture, the
        per-step terms, the coverage and what the predictor could not model."""
        from memprobe.train.op_rates import distinct_kernels

        i = self.inputs
        return {"method": "captured" if self.missing is None else "captured, rates from the scan",
                "kernels": len(self.graph.kernels), "distinct_ops": len(distinct_kernels(self.graph)),
                "capture_s": self.graph.capture_s, "machine": asdict(i.machine),
                "fault_bytes": sum((i.fault_bytes or {}).values()), "in_step_call_scale": self.call_scale,
                "coverage": self.pred.coverage, "unmodelled": [asdict(u) for u in self.pred.unmodelled],
                "missing": list(self.missing or [])}


def step_inputs(graph: C.StepGraph, device_result: Any, tkey: str, nthr: int, cache: Any = None,
                device: str = "cpu") -> tuple[Any, list[str] | None]:
    """The predictor's inputs for `graph` and what they lack: on the CPU measured now
    (`inputs.measure_step_inputs`; the caller holds the thread count; nothing lacks: None); on a
    GPU read from the GPU scan's rate table (`rates_from_scan.step_inputs_from_scan`), since the
    replays run on the CPU, with the table's gaps listed."""
    if device == "gpu":
        from memprobe.train.rates_from_scan import step_inputs_from_scan

        return step_inputs_from_scan(graph, device_result, tkey)
    from memprobe.train.inputs import measure_step_inputs

    return measure_step_inputs(graph, nthr, cache=cache), None


def predict_captured(spec: CnnSpec | TransformerSpec, device_result: Any, tkey: str, nthr: int,
                     cache: Any = None, graph: C.StepGraph | None = None,
                     call_scale: bool = True, device: str = "cpu") -> CapturedPrediction:
    """One point's step predicted from its capture (the caller holds the thread count or the
    GPU): its inputs (`step_inputs`; `cache` an op_rates.RateCache shared by the sweep's
    points), with `call_scale` their calls scaled to what they cost in the step's own sequence
    (`inputs.in_step_call_scale` on a real step of the network at its least sizes,
    `tiny_like`), the scan's levels as the ceilings, `predict.predict`."""
    from memprobe.train import predict as P
    from memprobe.train.inputs import with_call_scale

    graph = graph if graph is not None else capture_point(spec)
    ceilings = M.ceilings_from_device(device_result, tkey, nthr, {})
    inputs, missing = step_inputs(graph, device_result, tkey, nthr, cache, device)
    scale = tiny_call_scale(spec, inputs, ceilings, device_result, tkey, nthr, cache, device) if call_scale else None
    if scale is not None:
        inputs = with_call_scale(inputs, scale)
    return CapturedPrediction(P.predict(graph, ceilings, inputs), graph, inputs, scale, missing)


def tiny_like(spec: CnnSpec | TransformerSpec) -> CnnSpec | TransformerSpec:
    """The same network (its layers, blocks and ops) with every size at its least: a step of it
    is its calls and almost none of the work."""
    import dataclasses

    if isinstance(spec, TransformerSpec):
        # two sequences where the network has several: attention then copies as it does at size
        return dataclasses.replace(spec, batch=min(spec.batch, 2), seq=2, width=spec.heads,
                                   vocab=min(spec.vocab, 16), context=2 if spec.context else 0)
    if isinstance(spec, ResNetSpec):  # 64 px: the last stage keeps 2x2 (batch norm needs > 1 value)
        # widths 4x the stem, as ResNet-50's 256 over 64, so every stage keeps its projection
        return dataclasses.replace(spec, batch=1, resolution=64, stem_channels=4, widths=(16, 32, 64, 128),
                                   channels=128, classes=10)
    return dataclasses.replace(spec, batch=1, channels=4, resolution=4)


def tiny_call_scale(spec: CnnSpec | TransformerSpec, inputs: Any, ceilings: M.Ceilings, device_result: Any,
                    tkey: str, nthr: int, cache: Any = None, device: str = "cpu") -> float:
    """`inputs.in_step_call_scale` from a real step of `spec`'s network at its least sizes
    (`tiny_like`): its kernels' rates found as the point's (`step_inputs`), its per-step terms
    those of `inputs`; the caller holds the thread count or the GPU."""
    import dataclasses

    from memprobe.train.inputs import in_step_call_scale

    tiny = tiny_like(spec)
    g_tiny = capture_point(tiny)
    if device == "gpu":
        t_rates = step_inputs(g_tiny, device_result, tkey, nthr, device=device)[0].rates
    else:
        from memprobe.train import op_rates as R

        t_rates = R.measure_graph_rates(g_tiny, nthr, cache, inputs.machine.fault_s_per_byte)
    t_inputs = dataclasses.replace(inputs, rates=t_rates, fault_bytes=None)
    tiny_s = statistics.median(time_family_steps(tiny, TINY_STEPS, WARMUP))
    return in_step_call_scale(g_tiny, t_inputs, ceilings, tiny_s)


def op_label(o: Any) -> str:
    """A captured op's name in the breakdown: its operator and phase ("convolution forward")."""
    return f"{o.name.split('.')[1]} {o.phase}"


def breakdown(cp: CapturedPrediction, measured_s: float | None) -> list[dict[str, Any]]:
    """Per captured kernel: its predicted time (work, faults and call), what bounds it, and the
    fraction of that ceiling achieved when the measured step is shared among the ops in
    proportion to their predicted times. excess_s holds the farther operands' and the
    cross-core reads' time; time_s also holds the op's page faults."""
    pred = cp.pred
    scale = measured_s / pred.predicted_s if measured_s and pred.predicted_s else None
    out = []
    for o in pred.ops:
        work = o.time_s - o.overhead_s
        out.append({"name": op_label(o), "time_s": o.time_s, "compute_s": o.compute_s, "memory_s": o.memory_s,
                    "excess_s": o.excess_s + o.cross_core_s, "overhead_s": o.overhead_s, "bound": o.bound,
                    "achieved_fraction": (work / (o.time_s * scale)) if scale and o.time_s > 0 else None})
    return out


def _record(fp: FamilyPoint, tkey: str, nthr: int, cp: CapturedPrediction, samples: list[float],
                     device: str = "cpu") -> dict[str, Any]:
    s, pred = fp.spec, cp.pred
    meas = statistics.median(samples)
    cnn = isinstance(s, CnnSpec)
    p_max, p_sum = max(pred.compute_s, pred.memory_s), pred.compute_s + pred.memory_s
    return {
        "device": device, "model": s.model, "level": fp.level, "capacity_multiple": fp.capacity_multiple,
        "width": s.channels if cnn else s.width, "layers": s.blocks if cnn else s.layers, "batch": s.batch,
        "spec": _spec_dict(s), "threads": tkey, "n_threads": nthr, "working_set_bytes": fp.working_set_bytes,
        "flops": pred.flops, "bytes": pred.bytes, "measured_s": meas,
        "measured_spread": (max(samples) - min(samples)) / meas if len(samples) > 1 else 0.0,
        "samples_s": samples, "predicted_s": pred.predicted_s, "predicted_max_s": p_max,
        "predicted_sum_s": p_sum, "error": (pred.predicted_s - meas) / meas,
        "error_max": (p_max - meas) / meas, "error_sum": (p_sum - meas) / meas,
        "achieved_fraction": cp.roofline_s / meas, "bound": pred.bound, "compute_s": pred.compute_s,
        "memory_s": pred.memory_s, "overhead_s": pred.overhead_s,
        "levels_used": sorted({lv for op in pred.ops for lv in op.levels.values()}),
        "ops": breakdown(cp, meas),
    }


def _spec_dict(spec: CnnSpec | TransformerSpec) -> dict[str, int]:
    return {k: v for k, v in asdict(spec).items() if isinstance(v, int)}


def _skipped(fp: FamilyPoint, tkey: str, why: str, predicted_s: float | None = None,
             device: str = "cpu") -> dict[str, Any]:
    s = fp.spec
    cnn = isinstance(s, CnnSpec)
    return {"device": device, "model": s.model, "level": fp.level, "width": s.channels if cnn else s.width,
            "layers": s.blocks if cnn else s.layers, "batch": s.batch, "threads": tkey,
            "working_set_bytes": fp.working_set_bytes, "capacity_multiple": fp.capacity_multiple,
            "predicted_s": predicted_s, "why": why}


def _rate_cache(use_cache: bool) -> Any:
    """The rates of captured ops: one cache for this sweep alone (each distinct op of its points
    measured once, in the same minutes as the steps), or with `use_cache` the machine's cache
    that `memprobe predict` keeps (`op_rates.cache_path`). Not the default: on the shared
    2-vCPU guest a two-thread replay measured while a neighbour held a core (a convolution at
    60 ms a call, 400x its one-thread time) stayed in that cache and put every later sweep's
    two-thread points 40-90x high."""
    from memprobe.train import op_rates as R

    tag = R.machine_tag()
    return R.RateCache(R.cache_path(tag) if use_cache else None, tag)


def run_family_sweep(device_result: Any, family: str, progress: ProgressFn = _noop,
                     budget_s: float | None = None, batches: tuple[int, ...] = BATCHES,
                     points: list[FamilyPoint] | None = None, steps: int = STEPS,
                     free_bytes: float | None = None, device: str = "cpu", use_cache: bool = False
                     ) -> dict[str, Any]:
    """Measure, time and predict one family on `device` ("cpu": one thread and all threads;
    "gpu": PyTorch on CUDA against the scan's GPU levels and rate table); returns {"points",
    "skipped", "inputs"}.

    Per point, on each thread count in turn: its step captured, its inputs found (`step_inputs`:
    on the CPU the rates of its distinct kernels measured now and shared by the sweep's points
    at that thread count, or read from the machine's cache with `use_cache`), then its steps.
    Points run smallest first; one whose steps the budget has no room for (from its
    prediction) is skipped. `budget_s` None: the default
    profile's family budget (memprobe/profile.py)."""
    from memprobe.train import torch_families as TF

    if budget_s is None:
        budget_s = PROFILES["default"].training.family_budget_s
    if free_bytes is None:
        if device == "gpu":
            import torch

            free_bytes = float(torch.cuda.mem_get_info()[0])
        else:
            import psutil

            free_bytes = psutil.virtual_memory().available
    caps = [(lv.name, int(lv.size_bytes)) for lv in device_result.levels if lv.size_bytes]
    if not caps:
        raise M.MissingCeiling(f"{device}: no level with a capacity in the scan")
    t_start = time.perf_counter()
    plan = points if points is not None else plan_family(family, caps, batches, free_bytes / 8)
    plan = sorted(plan, key=lambda p: p.working_set_bytes)
    if device == "gpu":
        runs = [("threads_all", 1)]  # (the GPU's key in the scan's bandwidth table)
    else:
        n_all = N.max_threads()
        runs = [("threads_1", 1)] + ([("threads_all", n_all)] if n_all > 1 else [])
    out: dict[str, Any] = {"points": [], "skipped": [], "inputs": {}}
    total = len(plan) * len(runs)
    done = 0
    caches = {tkey: _rate_cache(use_cache) if device == "cpu" else None for tkey, _ in runs}
    inputs: dict[str, list[dict[str, Any]]] = {tkey: [] for tkey, _ in runs}
    used: dict[str, dict[str, Any]] = {tkey: {} for tkey, _ in runs}  # the rates the points read, by op key
    # each point on every thread count before the next point: where the budget runs out, the
    # points it kept still compare one thread with all
    for fp in plan:
        for tkey, nthr in runs:
            done += 1
            progress("training", done, total, f"{family} {device} {tkey} B={fp.spec.batch} "
                                              f"{fp.working_set_bytes / 2**20:.1f} MiB")
            if time.perf_counter() - t_start > budget_s:
                out["skipped"].append(_skipped(fp, tkey, f"time budget ({budget_s:.0f} s) spent", device=device))
                continue
            with TF.on_device(TF.GPU_DEVICE) if device == "gpu" else N.cpu_threads(nthr):
                # the per-step terms (faults, autograd's start, the optimizer's calls) again for
                # every point, so that the inputs and the steps are sampled in the same seconds:
                # on a shared guest a busy neighbour stalls every parallel region for
                # milliseconds while it runs (the ops' rates are shared through the cache)
                cp = predict_captured(fp.spec, device_result, tkey, nthr, caches[tkey], fp.captured(), device=device)
                inputs[tkey].append({"spec": _spec_dict(fp.spec), **cp.record()})
                used[tkey].update(cp.inputs.rates)
                cost = (steps + WARMUP + 1) * cp.predicted_s
                if time.perf_counter() - t_start + cost > budget_s:
                    out["skipped"].append(_skipped(fp, tkey, f"time budget ({budget_s:.0f} s): about {cost:.1f} s more",
                                                   cp.predicted_s, device))
                    continue
                samples = time_family_steps(fp.spec, steps)
            out["points"].append(_record(fp, tkey, nthr, cp, samples, device))
    for tkey, _ in runs:
        if inputs[tkey]:
            out["inputs"][tkey] = {"per_point": inputs[tkey], "op_rates": [asdict(r) for r in used[tkey].values()]}
    out["points"].sort(key=lambda p: (p["threads"], p["batch"], p["working_set_bytes"]))
    return out


def summarize_family(points: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """Median |error| and median signed error of one family, batch >= 16 and batch 1 apart."""
    out: dict[str, Any] = {}
    for tag, sel in (("batch_ge16", lambda p: p["batch"] >= 16), ("batch_1", lambda p: p["batch"] == 1)):
        errs = [p["error"] for p in points if p.get("model") == model and sel(p) and p.get("error") is not None
                and math.isfinite(p["error"])]
        out[f"median_abs_error_{tag}_{model}"] = statistics.median(abs(e) for e in errs) if errs else None
        out[f"median_error_{tag}_{model}"] = statistics.median(errs) if errs else None
        out[f"n_points_{tag}_{model}"] = len(errs)
    return out
