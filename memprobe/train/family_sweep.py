"""The CNN and transformer sweeps (beside stage 4: result -> **train** -> report).

Per family: sizes (channels and resolution, or width and sequence length) chosen from *this
scan's* inferred capacities so that the step's working set runs from inside L2 to several times
the last cache, at batch 1, 16 and 64, on one thread and on all. Each point's step is captured
from PyTorch's dispatcher (`capture.capture_step` on the network `torch_families` builds, with
the family's optimizer), its inputs measured here the way `memprobe predict` measures them
(`inputs.measure_step_inputs`: every distinct kernel replayed alone, the step's page faults,
autograd's start, the optimizer's calls; rates shared by the points of one sweep), the one
predictor (`predict.predict`) applied; then a few real training steps timed (median), the
prediction beside them with its per-op breakdown. A time budget bounds the sweep; points it
leaves out are listed with why. Nothing prints.

On the GPU the captured ops cannot yet be replayed (`op_rates` builds its tensors on the CPU),
so a GPU point still reads the hand-written op list (`family_model.predict_family_step`); and
so does a CPU point by default (DEFAULT_METHOD: why there) until the captured path is shown
to hold its accuracy.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from memprobe.profile import PROFILES
from memprobe.result import ModelInputs
from memprobe.train import capture as C
from memprobe.train import family_model as FM
from memprobe.train import model as M
from memprobe.train import network as N
from memprobe.train.families import CnnSpec, TransformerSpec, working_set_bytes

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
# how a CPU point is predicted: "hand" (the hand-written op list, family_model) or "captured"
# (the step captured, predict.predict). "hand" until the captured path is shown to hold the
# hand path's accuracy: on the loaded 2-vCPU guest four rounds could not tell them apart
# (one thread, batch >= 16, median |error|: cnn 11-26 % hand, 8-20 % captured; transformer
# 6-29 % hand, 8-26 % captured), and measuring every distinct kernel per sweep leaves out more
# of the 60 s budget's points (the transformer: 18 of 24)
DEFAULT_METHOD = "hand"


def _noop(stage: str, done: int, total: int, msg: str = "") -> None:
    return None


@dataclass
class FamilyPoint:
    level: str
    capacity_multiple: float
    spec: CnnSpec | TransformerSpec

    @property
    def working_set_bytes(self) -> int:
        return working_set_bytes(self.spec)


def _candidates(family: str, batch: int) -> list[list[CnnSpec | TransformerSpec]]:
    if family == "cnn":
        return [[CnnSpec(batch, c, hw) for hw in range(4, 257, 2)] for c in CNN_CHANNELS]
    return [[TransformerSpec(batch, t, d) for t in range(4, 1025, 4)] for d in TRANSFORMER_WIDTHS]


def spec_for(family: str, batch: int, target_bytes: float) -> CnnSpec | TransformerSpec:
    """The spec whose working set is nearest `target_bytes`: the widest channel count (width)
    that gets within TOLERANCE of it, the resolution (sequence length) chosen; else the nearest."""
    best = None
    for group in _candidates(family, batch):
        s = min(group, key=lambda sp: abs(math.log(working_set_bytes(sp) / target_bytes)))
        d = abs(math.log(working_set_bytes(s) / target_bytes))
        if d <= math.log(TOLERANCE):
            return s
        if best is None or d < best[0]:
            best = (d, s)
    return best[1]


def plan_family(family: str, capacities: list[tuple[str, int]], batches: tuple[int, ...] = BATCHES,
                max_working_set_bytes: float | None = None) -> list[FamilyPoint]:
    """Points of one family: per batch, one per target of TARGETS (distinct specs only)."""
    out: list[FamilyPoint] = []
    targets = []
    for idx, m in TARGETS:
        if -len(capacities) <= idx < len(capacities):
            name, cap = capacities[idx]
            targets.append((name, cap, m))
    for b in batches:
        seen = set()
        for name, cap, m in targets:
            if max_working_set_bytes and m * cap > max_working_set_bytes:
                continue
            s = spec_for(family, b, m * cap)
            if s in seen:
                continue
            seen.add(s)
            out.append(FamilyPoint(name, round(working_set_bytes(s) / cap, 3), s))
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


def breakdown(pred: M.Prediction, measured_s: float | None) -> list[dict[str, Any]]:
    """Per op: its predicted time (roofline + call), what bounds it, and the fraction of that
    ceiling achieved when the measured step is shared among the ops in proportion to their
    predicted times (steps are timed whole, ops are not)."""
    scale = measured_s / pred.predicted_s if measured_s and pred.predicted_s else None
    out = []
    for p in pred.ops:
        t = p.roofline_s + p.overhead_s
        out.append({"name": p.name, "time_s": t, "compute_s": p.compute_s, "memory_s": p.memory_s,
                    "excess_s": p.excess_s, "overhead_s": p.overhead_s, "bound": FM.op_bound(p),
                    "achieved_fraction": (p.roofline_s / (t * scale)) if scale and t > 0 else None})
    return out


def capture_point(spec: CnnSpec | TransformerSpec) -> C.StepGraph:
    """The point's training step captured under fake tensors (nothing allocated): the network
    `torch_families.step_parts` builds, with the family's optimizer."""
    from memprobe.train import torch_families as TF

    return C.capture_step(lambda: TF.step_parts(spec), optimizer=TF.optimizer_name(spec), name=spec.model,
                          batch=spec.batch)


@dataclass
class CapturedPrediction:
    """`predict.predict`'s answer for one point, with the totals a sweep point records."""

    pred: Any  # predict.Prediction
    graph: C.StepGraph
    inputs: Any  # predict.StepInputs
    call_scale: float | None = None  # inputs.in_step_call_scale, applied to `inputs`' calls

    @property
    def predicted_s(self) -> float:
        return self.pred.predicted_s

    @property
    def roofline_s(self) -> float:
        """The ops' work (what is not their calls): faults included."""
        return sum(o.time_s - o.overhead_s for o in self.pred.ops)

    def record(self) -> dict[str, Any]:
        """What the point keeps of its inputs: the per-step terms, the coverage and what the
        predictor could not model."""
        from memprobe.train.op_rates import distinct_kernels

        i, m = self.inputs, self.inputs.machine
        return {"method": "captured", "kernels": len(self.graph.kernels),
                "distinct_ops": len(distinct_kernels(self.graph)), "capture_s": self.graph.capture_s,
                "fault_s_per_byte": m.fault_s_per_byte, "backward_call_s": m.backward_call_s,
                "cross_core_s_per_byte": m.cross_core_s_per_byte,
                "update_call_s": list(m.update_call_s) if m.update_call_s else None,
                "fault_bytes": sum((i.fault_bytes or {}).values()), "in_step_call_scale": self.call_scale,
                "coverage": self.pred.coverage,
                "unmodelled": [asdict(u) for u in self.pred.unmodelled]}


def predict_captured(spec: CnnSpec | TransformerSpec, device_result: Any, tkey: str, nthr: int,
                     cache: Any = None, graph: C.StepGraph | None = None,
                     call_scale: bool = True) -> CapturedPrediction:
    """One point's step predicted from its capture (the caller holds the thread count): the
    inputs measured now (`inputs.measure_step_inputs`; `cache` an op_rates.RateCache shared by
    the sweep's points), with `call_scale` their calls scaled to what they cost in the step's
    own sequence (`inputs.in_step_call_scale` on a real step of the network at its least
    sizes, `family_model.tiny_like`), the scan's levels as the ceilings, `predict.predict`."""
    from memprobe.train import predict as P
    from memprobe.train.inputs import measure_step_inputs

    graph = graph if graph is not None else capture_point(spec)
    ceilings = M.ceilings_from_device(device_result, tkey, nthr, {})
    inputs = measure_step_inputs(graph, nthr, cache=cache)
    scale = tiny_call_scale(spec, inputs, ceilings, nthr, cache) if call_scale else None
    if scale is not None:
        from memprobe.train.inputs import with_call_scale

        inputs = with_call_scale(inputs, scale)
    return CapturedPrediction(P.predict(graph, ceilings, inputs), graph, inputs, scale)


def tiny_call_scale(spec: CnnSpec | TransformerSpec, inputs: Any, ceilings: M.Ceilings, nthr: int,
                    cache: Any = None) -> float:
    """`inputs.in_step_call_scale` from a real step of `spec`'s network at its least sizes
    (`family_model.tiny_like`): its kernels' rates measured as the point's (through `cache`),
    its per-step terms those of `inputs`; the caller holds the thread count."""
    import dataclasses

    from memprobe.train import op_rates as R
    from memprobe.train.inputs import in_step_call_scale

    tiny = FM.tiny_like(spec)
    g_tiny = capture_point(tiny)
    t_inputs = dataclasses.replace(inputs, rates=R.measure_graph_rates(g_tiny, nthr, cache, inputs.machine.fault_s_per_byte),
                                   fault_bytes=None)
    tiny_s = statistics.median(time_family_steps(tiny, TINY_STEPS, WARMUP))
    return in_step_call_scale(g_tiny, t_inputs, ceilings, tiny_s)


def op_label(o: Any) -> str:
    """A captured op's name in the breakdown: its operator and phase ("convolution forward")."""
    return f"{o.name.split('.')[1]} {o.phase}"


def captured_breakdown(cp: CapturedPrediction, measured_s: float | None) -> list[dict[str, Any]]:
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


def _captured_record(fp: FamilyPoint, tkey: str, nthr: int, cp: CapturedPrediction, samples: list[float],
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
        "ops": captured_breakdown(cp, meas),
    }


def _spec_dict(spec: CnnSpec | TransformerSpec) -> dict[str, int]:
    return {k: v for k, v in asdict(spec).items() if isinstance(v, int)}


def _record(fp: FamilyPoint, tkey: str, nthr: int, pred: M.Prediction, samples: list[float],
            device: str = "cpu") -> dict[str, Any]:
    s = fp.spec
    meas = statistics.median(samples)
    cnn = isinstance(s, CnnSpec)
    return {
        "device": device, "model": s.model, "level": fp.level, "capacity_multiple": fp.capacity_multiple,
        "width": s.channels if cnn else s.width, "layers": s.blocks if cnn else s.layers, "batch": s.batch,
        "spec": _spec_dict(s), "threads": tkey, "n_threads": nthr, "working_set_bytes": fp.working_set_bytes,
        "flops": pred.flops, "bytes": pred.bytes, "measured_s": meas,
        "measured_spread": (max(samples) - min(samples)) / meas if len(samples) > 1 else 0.0,
        "samples_s": samples, "predicted_s": pred.predicted_s, "predicted_max_s": pred.predicted_max_s,
        "predicted_sum_s": pred.predicted_sum_s, "error": (pred.predicted_s - meas) / meas,
        "error_max": (pred.predicted_max_s - meas) / meas, "error_sum": (pred.predicted_sum_s - meas) / meas,
        "achieved_fraction": pred.roofline_s / meas, "bound": pred.bound, "compute_s": pred.compute_s,
        "memory_s": pred.memory_s, "overhead_s": pred.overhead_s,
        "levels_used": sorted({lv for op in pred.ops for lv in op.levels.values()}),
        "ops": breakdown(pred, meas),
    }


def _skipped(fp: FamilyPoint, tkey: str, why: str, predicted_s: float | None = None,
             device: str = "cpu") -> dict[str, Any]:
    s = fp.spec
    cnn = isinstance(s, CnnSpec)
    return {"device": device, "model": s.model, "level": fp.level, "width": s.channels if cnn else s.width,
            "layers": s.blocks if cnn else s.layers, "batch": s.batch, "threads": tkey,
            "working_set_bytes": fp.working_set_bytes, "capacity_multiple": fp.capacity_multiple,
            "predicted_s": predicted_s, "why": why}


def measure_inputs(specs: list[CnnSpec | TransformerSpec], device_result: Any, tkey: str, nthr: int,
                   fault_s_per_byte: float, timings: dict[str, Any] | None = None
                   ) -> tuple[M.Ceilings, ModelInputs, list[dict[str, Any]], dict[str, Any]]:
    """The model's inputs for `specs` (one family) at one thread count, measured now through
    PyTorch (the caller holds the thread count): each op kind's call overhead, autograd's start,
    the optimizer's fixed and per-tensor costs and its rate, scaled by how much more the calls
    cost in a step's own sequence; then every lone op's rate. Returns (ceilings, step
    overheads, the lone ops' raw timings, the record kept in the study's inputs)."""
    from memprobe.train import torch_rates as TR

    kinds = {lo.kind for s in specs for lo in FM.lone_ops(s)}
    opt = FM.optimizer_of(specs[0])
    over = TR.measure_overheads(kinds)
    fixed, per_tensor, urate = TR.measure_update(opt)
    over[f"update|{opt}"] = per_tensor
    backward_s = TR.measure_backward_call_s()
    # the calls cost more in the step's own sequence (autograd's nodes between them, code and
    # objects cold again) than each kind repeated alone: a step of the same network at its
    # least sizes, against those overheads summed, scales them (1.7-2.7x on the Xeon guest)
    tiny = FM.tiny_like(specs[0])
    factor = statistics.median(time_family_steps(tiny, TINY_STEPS, WARMUP)) / \
        FM.step_overhead_s(tiny, over, ModelInputs(nthr, backward_call_s=backward_s, update_call_s=(fixed, per_tensor)))
    over = {k: v * factor for k, v in over.items()}
    so = ModelInputs(nthr, over, backward_call_s=backward_s * factor, fault_s_per_byte=fault_s_per_byte,
                     update_call_s=(fixed * factor, per_tensor * factor))
    base = M.ceilings_from_device(device_result, tkey, nthr, {}, ModelInputs(nthr, over))
    # a lone op's operands fit in half of the level after L1 (all threads: its pooled size)
    cache_bytes = (base.levels[1] if len(base.levels) > 2 else base.levels[0]).capacity_bytes or 0
    rates: dict[str, dict[tuple[int, int], float]] = {}
    raw_all: list[dict[str, Any]] = []
    timings = {} if timings is None else timings
    for s in specs:
        r, raw = TR.measure_rates(FM.lone_ops(s), cache_bytes * TR.CACHE_FRACTION, timings, over,
                                  fault_s_per_byte=fault_s_per_byte)
        rates.update(r)
        raw_all += raw
    rates[f"update|{opt}()"] = {(1, 0): urate}
    record = {"overhead_s": over, "backward_call_s": so.backward_call_s, "update_fixed_s": FM.update_fixed_s(so),
              "update_gflops": urate / 1e9, "fault_s_per_byte": fault_s_per_byte,
              "in_step_overhead_factor": factor}
    return M.ceilings_from_device(device_result, tkey, nthr, rates, so), so, raw_all, record


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
                     free_bytes: float | None = None, device: str = "cpu", use_cache: bool = False,
                     method: str | None = None) -> dict[str, Any]:
    """Measure, time and predict one family on `device` ("cpu": one thread and all threads;
    "gpu": PyTorch on CUDA against the scan's GPU levels); returns {"points", "skipped", "inputs"}.

    Per point: its step captured, its inputs measured (`predict_captured`: the rates of its
    distinct kernels measured now and shared by the sweep's points, or read from the machine's
    cache with `use_cache`), then its steps. Points run smallest first; one whose steps the budget has
    no room for (from its prediction) is skipped. `budget_s` None: the default profile's family
    budget (memprobe/profile.py). `method`: "captured" (the above) or "hand", the hand-written
    op list (`family_model.predict_family_step`, the GPU's path); None: DEFAULT_METHOD."""
    from memprobe.train import torch_families as TF
    from memprobe.train import torch_rates as TR

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
    plan = points if points is not None else plan_family(family, caps, batches, free_bytes / 8)
    plan = sorted(plan, key=lambda p: p.working_set_bytes)
    if device == "gpu":
        runs = [("threads_all", 1)]  # (the GPU's key in the scan's bandwidth table)
    else:
        n_all = N.max_threads()
        runs = [("threads_1", 1)] + ([("threads_all", n_all)] if n_all > 1 else [])
    hand = device == "gpu" or (method or DEFAULT_METHOD) == "hand"
    out: dict[str, Any] = {"points": [], "skipped": [], "inputs": {}}
    t_start = time.perf_counter()
    total = len(plan) * len(runs)
    done = 0
    for tkey, nthr in runs:
        with TF.on_device(TF.GPU_DEVICE) if device == "gpu" else N.cpu_threads(nthr):
            timings: dict[str, Any] = {}
            raw_all: list[dict[str, Any]] = []
            inputs: list[dict[str, Any]] = []
            # the hand-written path's fresh-page cost, once per thread count (a GPU's allocator
            # keeps its blocks; a captured point measures its own, with its inputs)
            fault = TR.measure_fault_s_per_byte() if plan and hand and device == "cpu" else 0.0
            cache = None if hand else _rate_cache(use_cache)
            used: dict[str, Any] = {}  # the rates the captured points read, by op key
            for fp in plan:
                done += 1
                progress("training", done, total, f"{family} {device} {tkey} B={fp.spec.batch} "
                                                  f"{fp.working_set_bytes / 2**20:.1f} MiB")
                if time.perf_counter() - t_start > budget_s:
                    out["skipped"].append(_skipped(fp, tkey, f"time budget ({budget_s:.0f} s) spent", device=device))
                    continue
                # the per-step terms (faults, autograd's start, the optimizer's calls) again for
                # every point, so that the inputs and the steps are sampled in the same seconds:
                # on a shared guest a busy neighbour stalls every parallel region for
                # milliseconds while it runs (the ops' rates are shared through `cache`)
                if hand:
                    ceil, so, raw, record = measure_inputs([fp.spec], device_result, tkey, nthr, fault, timings)
                    raw_all += raw
                    inputs.append(record)
                    pred = FM.predict_family_step(fp.spec, ceil, so)
                    predicted_s = pred.predicted_s
                else:
                    cp = predict_captured(fp.spec, device_result, tkey, nthr, cache)
                    inputs.append({"spec": _spec_dict(fp.spec), **cp.record()})
                    used.update(cp.inputs.rates)
                    predicted_s = cp.predicted_s
                cost = (steps + WARMUP + 1) * predicted_s
                if time.perf_counter() - t_start + cost > budget_s:
                    out["skipped"].append(_skipped(fp, tkey, f"time budget ({budget_s:.0f} s): about {cost:.1f} s more",
                                                   predicted_s, device))
                    continue
                samples = time_family_steps(fp.spec, steps)
                out["points"].append(_record(fp, tkey, nthr, pred, samples, device) if hand
                                     else _captured_record(fp, tkey, nthr, cp, samples, device))
            out["inputs"][tkey] = {"per_point": inputs, "lone_ops": raw_all} if hand else {
                "per_point": inputs, "op_rates": [asdict(r) for r in used.values()]}
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
