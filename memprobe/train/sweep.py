"""The training study's measurements (beside stage 4: result -> **train** -> report).

Plans the sweep from *this scan's* inferred capacities (widths whose step working set lands at
0.25..4 x each level, plus a small-width point where call overhead rules), measures the model's
own inputs that the scan does not hold (per-call overhead, per-shape-class GEMM and elementwise
rates, all on isolated calls at fixed in-cache sizes, never on a training step), times real
training steps (median of >= 20 after warm-up, spread and every sample kept), runs the
MNIST-shaped epoch, and pairs CPU and GPU points for the speed-up. Nothing prints.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Callable

import numpy as np

from memprobe.profile import PROFILES, TrainingPlan
from memprobe.result import ModelInputs
from memprobe.train import model as M
from memprobe.train import network as N

ProgressFn = Callable[[str, int, int, str], None]

# the default profile's sweep (memprobe/profile.py): the multiples and batches a plan defaults
# to and the rates' batches; a study's own schedule is its TrainingPlan
SWEEP_MULTIPLES = PROFILES["default"].training.multiples
SWEEP_BATCHES = PROFILES["default"].training.batches
LAYERS = 3
OVERHEAD_WIDTH = 8  # so small that every op is a call, not work
MIN_WIDTH = 4
WIDTH_ALIGN = 8  # 32-byte rows: BLAS and the kernels vectorise without a ragged tail
STEPS = PROFILES["default"].training.steps  # timed steps of a point outside the sweep (a GPU point's CPU partner)
WARMUP = 2  # untimed steps before a point's first round (one before each later round)
INPUT_REPS_PER_ROUND = 3  # timed batches per overhead or rate, each round (pooled: median)
KEEP_NETWORKS_BYTES = 1 << 30  # networks kept alive between rounds, at most (else rebuilt)
RATE_WIDTHS = (16, 32, 64, 128, 256, 512, 1024)  # GEMM shape classes: one per width octave
ROW_WIDTHS = (8, 32, 128, 512)  # row-length classes of the elementwise kernels (serial build)
ELEMENTWISE_KERNELS = ("bias_relu", "softmax_xent", "bias_grad", "relu_bwd_bias_grad", "sgd_update")
MNIST_DIMS = (784, 256, 256, 10)
MNIST_SAMPLES = 60_000
MNIST_BATCH = 64


def _noop(stage: str, done: int, total: int, msg: str = "") -> None:
    return None


def spread(samples: list[float]) -> float:
    """(max - min) / median, the same convention as result.CurvePoint.spread."""
    if len(samples) < 2:
        return 0.0
    med = statistics.median(samples)
    return (max(samples) - min(samples)) / med if med else math.nan


# ---- planning ----------------------------------------------------------------------------------
@dataclass
class SweepPoint:
    level: str  # the level whose capacity the width was chosen against ("overhead" for the tiny one)
    capacity_multiple: float | None  # working set / that capacity, after rounding the width
    width: int
    layers: int
    batch: int
    working_set_bytes: int


def width_for_working_set(target_bytes: float, layers: int, batch: int, align: int = WIDTH_ALIGN) -> int:
    """The aligned width whose step working set is nearest `target_bytes` (log scale)."""
    def ws(w: int) -> int:
        return M.working_set_bytes(N.NetShape.square(w, layers, batch))

    lo, hi = 1, 1
    while ws(hi) < target_bytes:
        hi *= 2
    while hi - lo > 1:  # largest w with ws(w) <= target
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ws(mid) <= target_bytes else (lo, mid)
    cands = {max(align, (lo // align) * align), max(align, -(-lo // align) * align),
             max(align, -(-hi // align) * align)}
    return min(cands, key=lambda w: abs(math.log(ws(w) / target_bytes)))


def plan_points(capacities: list[tuple[str, int]], batches: tuple[int, ...] = SWEEP_BATCHES,
                layers: int = LAYERS, multiples: tuple[float, ...] = SWEEP_MULTIPLES,
                max_working_set_bytes: float | None = None) -> list[SweepPoint]:
    """Points per batch: for each (level, capacity) nearest first and each multiple, the width
    whose working set is nearest multiple x capacity; one width serves one point (the first
    level that asked for it), plus the overhead point. Targets whose width would fall under
    MIN_WIDTH (big batches inside L1) or whose working set exceeds the cap are left out."""
    out: list[SweepPoint] = []
    for batch in batches:
        seen: set[int] = set()
        shape = N.NetShape.square(OVERHEAD_WIDTH, layers, batch)
        out.append(SweepPoint("overhead", None, OVERHEAD_WIDTH, layers, batch, M.working_set_bytes(shape)))
        seen.add(OVERHEAD_WIDTH)
        for name, cap in capacities:
            for m in multiples:
                target = m * cap
                if max_working_set_bytes and target > max_working_set_bytes:
                    continue
                w = width_for_working_set(target, layers, batch)
                ws = M.working_set_bytes(N.NetShape.square(w, layers, batch))
                if w < MIN_WIDTH or w in seen or ws > 1.5 * target or ws < target / 1.5:
                    continue
                seen.add(w)
                out.append(SweepPoint(name, round(ws / cap, 3), w, layers, batch, ws))
    return out


def capacities_of(device: Any) -> list[tuple[str, int]]:
    """(name, size_bytes) of every level that has a capacity (main memory has none)."""
    return [(lv.name, int(lv.size_bytes)) for lv in device.levels if lv.size_bytes]


# ---- the model's own inputs: call overhead and shape-class rates -------------------------------
def _plan_call_s(calls: list[Callable[[], Any]], reps_n: int = 7) -> float:
    # seconds per call of a list of bound calls run as CpuNetwork.step runs its plan
    reps = []
    for _ in range(reps_n):
        t0 = time.perf_counter()
        for call in calls:
            call()
        reps.append((time.perf_counter() - t0) / len(calls))
    return statistics.median(reps)


def _median_call_s(fn: Callable[[], Any], n: int, reps_n: int = 7) -> float:
    # time batches of calls (one call is below timer resolution) and keep the median batch: the
    # model predicts the median step, so its per-op rates use the same statistic (the best batch
    # predicts small widths too fast on a shared machine: docs/validation.md, "Training prediction")
    reps = []
    for _ in range(reps_n):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        reps.append((time.perf_counter() - t0) / n)
    return statistics.median(reps)


def measure_cpu_overheads(threads: int, reps: int = 7) -> dict[str, float]:
    """Seconds per call of an empty-work call of each dispatch class: a 1x1 NumPy matmul (the
    Python -> NumPy -> BLAS path), an empty @njit call, an empty prange call (thread wake-up);
    and of each elementwise kernel on one element ("serial:<kernel>", "parallel:<kernel>"): a
    Numba call unboxes every argument, so a kernel taking five arrays costs 2-5x the empty call
    with one (figures in docs/validation.md, "Training prediction"), per op and step."""
    a = np.ones((1, 1), N.DTYPE)
    c = np.empty((1, 1), N.DTYPE)
    lab, lab2 = np.zeros(1, np.int32), np.zeros(1, np.int32)
    N.SERIAL["empty"](a)
    # bound calls, as the network's step plan issues them (partial objects, views made once)
    out = {"gemm": _plan_call_s([partial(np.matmul, a, a, out=c)] * 2000, reps),
           "serial": _plan_call_s([partial(N.SERIAL["empty"], a)] * 2000, reps),
           # the data-loading op is two copies (inputs and labels)
           "copyto": 2 * _plan_call_s([partial(np.copyto, c, a), partial(np.copyto, lab, lab2)] * 1000, reps)}
    if threads > 1:
        per_thread = np.zeros(threads, N.DTYPE)
        N.PARALLEL["empty_parallel"](per_thread)
        out["parallel"] = _plan_call_s([partial(N.PARALLEL["empty_parallel"], per_thread)] * 500, reps)
    else:
        out["parallel"] = out["serial"]
    rng = np.random.default_rng(2)
    for build, table in [("serial", N.SERIAL)] + ([("parallel", N.PARALLEL)] if threads > 1 else []):
        for name in ELEMENTWISE_KERNELS:
            call, _ = _elementwise_call(table, name, 1, 1, rng)
            call()
            out[f"{build}:{name}"] = _plan_call_s([call] * (2000 if build == "serial" else 500), reps)
    return out


def in_step_overhead_factor(threads: int, overhead_s: dict[str, float], reps: int = 7) -> tuple[float, float]:
    """How much more the step's calls cost in their own sequence than each repeated alone:
    the network's step plan run on one-element operands (no work, every call as a step issues
    it), over the sum of the same calls' overheads measured one kind at a time. A call repeated
    alone finds its code, its branch history and its Python objects hot; in a step each call
    follows others (1.11-1.13x on the Xeon guest: docs/validation.md, "Training prediction").
    Returns (factor, seconds per one-element step). Measured on calls, never on a real step."""
    tiny = N.NetShape((1, 1, 1, 1), 1)
    net = N.CpuNetwork(tiny, threads=threads)
    x, labels = N.batch_data(net, tiny)
    net.step(x, labels)  # builds the plan and compiles every kernel
    plan = net._plans[1]
    mixed_s = _plan_call_s(plan * 100, reps) * len(plan)
    alone_s = M.step_overhead_s(tiny, overhead_s, M.cpu_dispatch(threads, N.PARALLEL_MIN_ELEMENTS))
    return mixed_s / alone_s, mixed_s


CROSS_CORE_WIDTH = 512  # the weights the cross-core figure is measured on: 512x512 fp32, 1 MiB
CROSS_CORE_BATCH = 64


def measure_cross_core_s_per_byte(threads: int, reps: int = 7) -> float:
    """Seconds per byte that a GEMM on all threads pays, beyond its rate, for an operand one
    core has just written: the step's serial kernels (SGD's update of the weights, bias and
    ReLU on the activations) leave their output in that core's private cache, and the other
    threads read their part of it from there. A 64x512 by 512x512 GEMM timed back to back,
    against the same GEMM right after the main thread rewrites its weights in place (NumPy, one
    core; that write timed alone and taken out); per byte of the weights the other threads read.
    On the Xeon guest 65 us for 0.5 MB, about 6 GB/s: below the L3's bandwidth
    (docs/validation.md, "Training prediction"). 0 on one thread."""
    if threads <= 1:
        return 0.0
    rng = np.random.default_rng(3)
    a = rng.random((CROSS_CORE_BATCH, CROSS_CORE_WIDTH), dtype=np.float32)
    w = rng.random((CROSS_CORE_WIDTH, CROSS_CORE_WIDTH), dtype=np.float32)
    o = np.empty((CROSS_CORE_BATCH, CROSS_CORE_WIDTH), np.float32)
    gemm = partial(np.matmul, a, w, out=o)
    write = partial(np.multiply, w, np.float32(1.0), out=w)

    def both() -> None:
        write()
        gemm()

    n = 20  # calls per timed batch: a GEMM of this size lasts about 0.15 ms
    gemm_s, write_s, both_s = (_median_call_s(f, n, reps) for f in (gemm, write, both))
    other_bytes = w.nbytes * (threads - 1) / threads
    return max(0.0, both_s - gemm_s - write_s) / other_bytes


def _rate(flops: float, t_s: float, overhead_s: float) -> float | None:
    # the call's overhead is a separate term of the model: take it out of the rate, but only
    # where the work clearly dominates (else the difference is noise)
    if t_s < 3 * overhead_s:
        return None
    return flops / (t_s - overhead_s)


def _gemm_call(kind: str, batch: int, width: int) -> tuple[Callable[[], Any], float]:
    rng = np.random.default_rng(0)
    a = rng.random((batch, width), dtype=np.float32)
    w = rng.random((width, width), dtype=np.float32)
    # o is an input of the weight-gradient GEMM: filled, never uninitialised memory (which can
    # hold denormals or NaNs, slow paths in BLAS)
    o = rng.random((batch, width), dtype=np.float32)
    g = np.empty((width, width), np.float32)
    fl = 2.0 * batch * width * width
    # bound with partial and the transposed views made once, as the network's step plan does
    if kind == "fwd":
        return partial(np.matmul, a, w, out=o), fl
    if kind == "bwd_data":
        return partial(np.matmul, a, w.T, out=o), fl
    return partial(np.matmul, a.T, o, out=g), fl


def measure_cpu_rates(threads: int, batches: tuple[int, ...], overhead_s: dict[str, float],
                      max_bytes: float, reps: int = 7) -> tuple[dict[str, dict[tuple[int, int], float]], list[dict[str, Any]]]:
    """The compute ceiling of each op class at this thread count: for GEMMs, per kind, batch
    and width octave (RATE_WIDTHS) whose operands fit `max_bytes` (in cache, so the rate is the
    shape's, not memory's: BLAS efficiency and its threading decisions change with the shape),
    FLOP/s with the call overhead taken out; for elementwise kernels, one in-cache size per
    build. Measured on isolated calls, never on a training step."""
    rates: dict[str, dict[tuple[int, int], float]] = {}
    raw: list[dict[str, Any]] = []
    for kind in M.GEMM_KINDS:
        for b in batches:
            for wd in RATE_WIDTHS:
                if (wd * wd + 2 * b * wd) * 4 > max_bytes:
                    continue
                fn, fl = _gemm_call(kind, b, wd)
                fn()
                n = max(1, min(200, int(1e6 / max(fl, 1.0))))
                t = _median_call_s(fn, n, reps)
                r = _rate(fl, t, overhead_s["gemm"])
                raw.append({"class": kind, "batch": b, "width": wd, "call_s": t,
                            "gflops": None if r is None else r / 1e9})
                if r is not None:
                    rates.setdefault(kind, {})[(b, wd)] = r
    # elementwise: the serial build from 16 Ki elements (in L1/L2) at each row length of
    # ROW_WIDTHS (the update, on flat arrays, at one), the prange build from the size where the
    # network starts using it (rows of 1024: it only runs on long rows in the sweep); the size
    # grows until the work clearly exceeds the call overhead (else the rate is lost in the noise)
    builds = [("serial", N.SERIAL, ROW_WIDTHS, 16 << 10)]
    if threads > 1:
        builds.append(("parallel", N.PARALLEL, (1024,), N.PARALLEL_MIN_ELEMENTS))
    rng = np.random.default_rng(1)
    for build, table, widths, elements in builds:
        for name in ELEMENTWISE_KERNELS:
            ov = overhead_s.get(f"{build}:{name}", overhead_s[build])
            for m in (widths if name != "sgd_update" else (256,)):
                for grow in range(4):
                    n = max(1, elements // m) * 4 ** grow
                    t, fl = _elementwise_call_s(table, name, n, m, rng, reps)
                    r = _rate(fl, t, ov)
                    if r is not None:
                        break
                if r is None:  # still overhead-sized: keep the overhead inside the rate (conservative)
                    r = fl / t
                raw.append({"class": f"{name}:{build}", "batch": None, "width": m, "rows": n, "call_s": t,
                            "gflops": r / 1e9})
                rates.setdefault(f"{name}:{build}", {})[(0, m if name != "sgd_update" else 0)] = r
    return rates, raw


def rates_to_json(rates: dict[str, dict[tuple[int, int], float]]) -> dict[str, dict[str, dict[str, float]]]:
    """{class: {batch: {width: GFLOP/s}}} with string keys (JSON)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for c, t in rates.items():
        for (b, w), r in sorted(t.items()):
            out.setdefault(c, {}).setdefault(str(b), {})[str(w)] = r / 1e9
    return out


def rates_from_json(stored: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[tuple[int, int], float]]:
    return {c: {(int(b), int(w)): g * 1e9 for b, row in t.items() for w, g in row.items()}
            for c, t in stored.items()}


def _elementwise_call(table: dict[str, Callable], name: str, n: int, m: int,
                      rng: np.random.Generator) -> tuple[Callable[[], Any], float]:
    """One elementwise kernel bound to an n x m operand (as the network calls it), and its FLOPs."""
    z = rng.standard_normal((n, m), dtype=np.float32)
    z2 = z.copy()
    b = np.zeros(m, np.float32)
    db = np.zeros(m, np.float32)
    lab = rng.integers(0, m, n).astype(np.int32)
    # bound with partial and views made once, as CpuNetwork's step plan issues its calls
    args, fl = {
        "bias_relu": ((z, b), 2.0 * n * m),
        "softmax_xent": ((z, b, lab, z2), float(M.SOFTMAX_FLOPS_PER_ELEMENT * n * m)),
        "bias_grad": ((z, db), float(n * m)),
        "relu_bwd_bias_grad": ((z2, z, db), 2.0 * n * m),
        "sgd_update": ((z.reshape(-1), z2.reshape(-1), b, db, 1e-9), 2.0 * (n * m + m)),
    }[name]
    return partial(table[name], *args), fl


def _elementwise_call_s(table: dict[str, Callable], name: str, n: int, m: int,
                        rng: np.random.Generator, reps: int = 7) -> tuple[float, float]:
    """Seconds per call of one elementwise kernel on an n x m operand, and its FLOPs."""
    fn, fl = _elementwise_call(table, name, n, m, rng)
    fn()
    return _median_call_s(fn, max(1, min(20, int(2e6 / (n * m)))), reps), fl


# ---- running points ----------------------------------------------------------------------------
def measure_point(shape: N.NetShape, device: str, framework: str, threads: int,
                  steps: int = STEPS, warmup: int = WARMUP) -> list[float]:
    """Seconds per step of `steps` real training steps after `warmup`."""
    net = N.make_network(shape, device=device, framework=framework, threads=threads)
    x, labels = N.batch_data(net, shape)
    return N.time_steps(net, x, labels, steps, warmup)


def point_record(device: str, pt: SweepPoint, threads_key: str, pred: M.Prediction,
                 samples: list[float], ceilings: M.Ceilings) -> dict[str, Any]:
    meas = statistics.median(samples)
    # the fraction of the bounding ceiling achieved: the roofline time (no overhead) over the
    # measured time (1.0 = the step ran at its ceilings; overhead-bound points sit far below)
    return {
        "device": device, "level": pt.level, "capacity_multiple": pt.capacity_multiple,
        "width": pt.width, "layers": pt.layers, "batch": pt.batch, "threads": threads_key,
        "n_threads": ceilings.threads,
        "working_set_bytes": pt.working_set_bytes, "flops": pred.flops, "bytes": pred.bytes,
        "measured_s": meas, "measured_spread": spread(samples), "samples_s": samples,
        "predicted_s": pred.predicted_s, "predicted_max_s": pred.predicted_max_s,
        "predicted_sum_s": pred.predicted_sum_s,
        "error": (pred.predicted_s - meas) / meas,
        "error_max": (pred.predicted_max_s - meas) / meas,
        "error_sum": (pred.predicted_sum_s - meas) / meas,
        "achieved_fraction": pred.roofline_s / meas, "bound": pred.bound,
        "compute_s": pred.compute_s, "memory_s": pred.memory_s, "overhead_s": pred.overhead_s,
        "levels_used": sorted({lv for op in pred.ops for lv in op.levels.values()}),
    }


def summarize(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Median |error| of the model and of both baselines, per regime."""
    def med(sel: list[dict[str, Any]], key: str) -> float | None:
        v = [abs(p[key]) for p in sel if p.get(key) is not None and math.isfinite(p[key])]
        return statistics.median(v) if v else None

    out: dict[str, Any] = {}
    groups = {
        "batch_ge16": [p for p in points if p["batch"] >= 16 and p["level"] != "overhead"],
        "batch_1": [p for p in points if p["batch"] == 1 and p["level"] != "overhead"],
        "overhead_regime": [p for p in points if p["level"] == "overhead" or p["bound"] == "overhead"],
        "all": points,
    }
    for dev in sorted({p["device"] for p in points}):
        for name, sel in groups.items():
            s = [p for p in sel if p["device"] == dev]
            tag = name if dev == "cpu" else f"{dev}_{name}"
            out[f"median_abs_error_{tag}"] = med(s, "error")
            out[f"median_abs_error_max_{tag}"] = med(s, "error_max")
            out[f"median_abs_error_sum_{tag}"] = med(s, "error_sum")
            out[f"n_points_{tag}"] = len(s)
    return out


def _measure_inputs(device: str, nthr: int, last_cache: float, reps: int
                    ) -> tuple[ModelInputs, dict[str, dict[tuple[int, int], float]], list[dict[str, Any]], str]:
    """One round of the model's own inputs: call overheads, the cross-core figure (the CPU) and
    shape-class rates (isolated calls)."""
    batches = tuple(sorted(set(SWEEP_BATCHES) | {MNIST_BATCH}))
    if device == "cpu":
        with N.cpu_threads(nthr) as how:
            alone = measure_cpu_overheads(nthr, reps)
            # the rates take out each call's overhead as measured alone (the call repeated, as
            # the rate's own timing repeats it); the step pays them in its own sequence
            rates, raw = measure_cpu_rates(nthr, batches, alone, max_bytes=min(last_cache / 2, 8 << 20), reps=reps)
            factor, mixed_s = in_step_overhead_factor(nthr, alone, reps)
            cross = measure_cross_core_s_per_byte(nthr, reps)
        raw.append({"class": "in_step_overhead_factor", "batch": None, "width": None, "call_s": mixed_s,
                    "factor": factor})
        over = ModelInputs(nthr, {k: v * factor for k, v in alone.items()}, cross_core_s_per_byte=cross)
        return over, rates, raw, how
    calls = measure_gpu_overheads(reps)
    rates, raw = measure_gpu_rates(batches, calls, reps)
    return ModelInputs(nthr, calls), rates, raw, "n/a"


def _pool_rounds(rounds: list[tuple[ModelInputs, dict[str, dict[tuple[int, int], float]]]]
                 ) -> tuple[ModelInputs, dict[str, dict[tuple[int, int], float]]]:
    """Each overhead, the cross-core figure and each rate: the median of its per-round values (a
    round may lack a rate that its noise left inside the overhead)."""
    first = rounds[0][0]
    calls = {k: statistics.median(r[0].call_overhead_s[k] for r in rounds if k in r[0].call_overhead_s)
             for k in first.call_overhead_s}
    cross = (None if first.cross_core_s_per_byte is None else
             statistics.median(r[0].cross_core_s_per_byte for r in rounds if r[0].cross_core_s_per_byte is not None))
    over = ModelInputs(first.threads, calls, cross_core_s_per_byte=cross)
    keys = {(c, bw) for _, rates in rounds for c, t in rates.items() for bw in t}
    rates: dict[str, dict[tuple[int, int], float]] = {}
    for c, bw in sorted(keys):
        rates.setdefault(c, {})[bw] = statistics.median(r[1][c][bw] for r in rounds if bw in r[1].get(c, {}))
    return over, rates


def run_device_sweep(device_result: Any, device: str = "cpu", plan: TrainingPlan | None = None,
                     framework: str = "numpy", progress: ProgressFn = _noop,
                     budget_s: float | None = None, free_bytes: float | None = None) -> dict[str, Any]:
    """Measure the model's inputs, plan and time the sweep for one device; returns {"points",
    "skipped", "overhead_s", "gemm_rates", "ceilings_source", "warnings",
    "blas_threads_control", "rounds"}.

    `plan`: the profile's training plan (None: the default profile's); `budget_s` (None: the
    plan's for `device`) bounds the sweep.

    Rounds: each point's steps are taken in rounds (the plan's: 20 in 4; quick, 6 in 1) that
    cycle through every point, and the model's inputs (overheads, rates) are measured again at the start of every round and
    pooled (median). Why: on a shared machine a busy neighbour slows everything for seconds at
    a time. Timed point after point, the points that fell in such a spell come out slower than
    the rates measured seconds earlier predict (20-40 % on a 2-vCPU AMD EPYC Zen 3 KVM guest,
    docs/validation.md); in rounds, a spell touches a few steps of many points, and the inputs and the steps are sampled
    over the same minutes. Each round starts a point with one untimed step (its working set
    back in the caches after the other points ran).

    Points are chosen cheapest first (cost from the model's prediction with the first round's
    inputs, so no measured step is used) until the time budget is spent; after the first round
    the dearest points are dropped while the later rounds, projected from the first one's real
    costs, would pass the budget by more than 25 %. Both are listed as skipped."""
    sched = plan if plan is not None else PROFILES["default"].training
    budget = budget_s if budget_s is not None else sched.sweep_budget_s(device)
    steps, rounds = sched.steps, sched.rounds
    warnings: list[str] = []
    if free_bytes is None:
        import psutil

        free_bytes = psutil.virtual_memory().available
    caps = capacities_of(device_result)
    if not caps:
        raise M.MissingCeiling(f"{device}: no level with a capacity in the scan")
    n_all = N.max_threads() if device == "cpu" else 1
    thread_runs = [("threads_1", 1), ("threads_all", n_all)] if device == "cpu" else [("threads_all", 1)]
    if device == "cpu" and (n_all == 1 or not sched.one_thread):
        thread_runs = thread_runs[-1:]
    points_plan = plan_points(caps, sched.batches, multiples=sched.multiples, max_working_set_bytes=free_bytes / 4)
    last_cache = caps[-1][1]
    out: dict[str, Any] = {"points": [], "skipped": [], "overhead_s": {}, "gemm_rates": {},
                           "ceilings_source": {}, "warnings": warnings, "blas_threads_control": None,
                           "rounds": rounds, "steps": steps}
    dispatch = (lambda n: M.cpu_dispatch(n, N.PARALLEL_MIN_ELEMENTS)) if device == "cpu" else (lambda n: M.gpu_dispatch)
    inputs: dict[str, list[tuple[dict[str, float], dict[str, dict[tuple[int, int], float]]]]] = {}
    raws: dict[str, list[dict[str, Any]]] = {}

    def measure_round(r: int) -> None:
        for k, (tkey, nthr) in enumerate(thread_runs):
            progress("training", k, len(thread_runs) + 1, f"{device} {tkey}: overhead and rates, round {r + 1}")
            over, rates, raw, how = _measure_inputs(device, nthr, last_cache, INPUT_REPS_PER_ROUND)
            if device == "cpu":
                out["blas_threads_control"] = how
                if how == "none" and nthr == 1 and r == 0:
                    warnings.append("could not set BLAS threads at run time: one-thread points ran BLAS with its default threads")
            inputs.setdefault(tkey, []).append((over, rates))
            raws.setdefault(tkey, []).extend({**e, "round": r} for e in raw)

    def ceilings_now() -> dict[str, M.Ceilings]:
        out_c = {}
        for tkey, nthr in thread_runs:
            over, rates = _pool_rounds(inputs[tkey])
            out_c[tkey] = M.ceilings_from_device(device_result, tkey, nthr, rates, over)
        return out_c

    def drop_unpredictable() -> None:
        # a thread count whose ceiling the scan flagged (contention, physics) gets no points;
        # the other one still does
        for tkey, nthr in list(thread_runs):
            over, rates = _pool_rounds(inputs[tkey])
            try:
                M.ceilings_from_device(device_result, tkey, nthr, rates, over)
            except M.MissingCeiling as exc:
                if len(thread_runs) == 1:
                    raise
                thread_runs.remove((tkey, nthr))
                warnings.append(f"{tkey} points left out: the prediction needs a ceiling the scan lacks ({exc})")

    # first round of inputs: the cost estimates that choose the points. An untimed single pass
    # first loads or compiles every kernel, so the round's time stands for the later rounds'
    for tkey, nthr in thread_runs:
        _measure_inputs(device, nthr, last_cache, 1)
    t_in = time.perf_counter()
    measure_round(0)
    inputs_round_s = time.perf_counter() - t_in
    drop_unpredictable()
    ceil0 = ceilings_now()
    costed: list[tuple[float, SweepPoint, str, int, float]] = []
    for tkey, nthr in thread_runs:
        for pt in points_plan:
            shape = N.NetShape.square(pt.width, pt.layers, pt.batch)
            pred = M.predict_step(shape, ceil0[tkey], dispatch(nthr))
            # steps, one untimed step per round (two in the first), and building the network
            cost = (steps + rounds + 1) * pred.predicted_s + 3 * shape.n_params * 4 / 1e9
            costed.append((cost, pt, tkey, nthr, pred.predicted_s))
    costed.sort(key=lambda t: t[0])
    chosen: list[tuple[float, SweepPoint, str, int, float]] = []
    total = (rounds - 1) * inputs_round_s  # the later rounds' inputs come out of the budget too
    for item in costed:
        if total + item[0] > budget and chosen:  # the cheapest point runs whatever the budget
            out["skipped"].append(_skipped(item, device, f"time budget ({budget:.0f} s): about {item[0]:.1f} s more"))
        else:
            chosen.append(item)
            total += item[0]

    # rounds over the chosen points; networks are kept between rounds while they fit in memory
    keep_bytes = min(free_bytes / 4, KEEP_NETWORKS_BYTES)
    nets: dict[int, tuple[Any, Any, Any]] = {}
    kept = 0.0
    samples: dict[int, list[float]] = {i: [] for i in range(len(chosen))}
    later_round_s: dict[int, float] = {}  # each point's projected cost in one later round
    per_round = -(-steps // rounds)
    t_start = time.perf_counter()
    for r in range(rounds):
        if r:
            measure_round(r)
        for i, (cost, pt, tkey, nthr, _) in enumerate(chosen):
            if i not in samples:
                continue
            shape = N.NetShape.square(pt.width, pt.layers, pt.batch)
            progress("training", i + 1, len(chosen), f"{device} {tkey} W={pt.width} B={pt.batch} (round {r + 1}/{rounds})")
            with (N.cpu_threads(nthr) if device == "cpu" else contextlib.nullcontext()):
                t0 = time.perf_counter()
                if i in nets:
                    net, x, labels = nets[i]
                else:
                    net = N.make_network(shape, device=device, framework=framework,
                                         threads=nthr if device == "cpu" else 0)
                    x, labels = N.batch_data(net, shape)
                    if kept + pt.working_set_bytes <= keep_bytes:
                        nets[i] = (net, x, labels)
                        kept += pt.working_set_bytes
                build_s = time.perf_counter() - t0 if i not in nets else 0.0
                got = N.time_steps(net, x, labels, min(per_round, steps - len(samples[i])),
                                   WARMUP if r == 0 else 1)
                del net, x, labels  # a network not kept is freed before the next point
            samples[i] += got
            if r == 0:  # a later round: the timed steps and one untimed one, plus a rebuild
                later_round_s[i] = sum(got) * (len(got) + 1) / max(len(got), 1) + build_s
        if r == 0 and rounds > 1:  # (one round: every point is measured already)
            # project the later rounds (inputs and steps) from this round's real costs; drop the
            # dearest points while the study would pass its budget by more than 25 % (the slack
            # keeps a noisy first round from dropping points the budget had room for), never the
            # last one: its first round is already measured
            spent = time.perf_counter() - t_start + inputs_round_s
            left = (sum(later_round_s.values()) + inputs_round_s) * (rounds - 1)
            for i in sorted(samples, key=lambda j: -later_round_s[j]):
                if spent + left <= 1.25 * budget or len(samples) == 1:
                    break
                left -= later_round_s[i] * (rounds - 1)
                del samples[i]
                if nets.pop(i, None) is not None:
                    kept -= chosen[i][1].working_set_bytes
                out["skipped"].append(_skipped(chosen[i], device, f"time budget ({budget:.0f} s): a round of it "
                                               f"costs about {later_round_s[i]:.2f} s, the rest would not fit"))

    # the model's inputs pooled over every round, then the predictions
    ceil = ceilings_now()
    for tkey, _ in thread_runs:
        out["overhead_s"][tkey] = _pool_rounds(inputs[tkey])[0].overhead_dict()  # the stored form
        out["gemm_rates"][tkey] = {"rates_gflops": rates_to_json(ceil[tkey].rates_flops), "raw": raws[tkey]}
    for i, got in samples.items():
        _, pt, tkey, nthr, _ = chosen[i]
        pred = M.predict_step(N.NetShape.square(pt.width, pt.layers, pt.batch), ceil[tkey], dispatch(nthr))
        out["points"].append(point_record(device, pt, tkey, pred, got, ceil[tkey]))
    out["points"].sort(key=lambda p: (p["threads"], p["batch"], p["working_set_bytes"]))
    return out


def _skipped(item: tuple[float, SweepPoint, str, int, float], device: str, why: str) -> dict[str, Any]:
    cost, pt, tkey, _, predicted_s = item
    return {**asdict(pt), "threads": tkey, "device": device, "predicted_s": predicted_s,
            "estimated_cost_s": cost, "why": why}


# ---- GPU inputs ---------------------------------------------------------------------------------
def measure_gpu_overheads(reps: int = 7) -> dict[str, float]:
    """Seconds per call for an empty numba.cuda kernel launch and a 1x1 CuPy matmul, each a
    batch of back-to-back calls then one synchronise (launches queue; their cost is the issue)."""
    xp = N.gpu_array_module()
    k = N._cuda_kernels()
    a = xp.ones((1, 1), np.float32)
    c = xp.empty((1, 1), np.float32)
    n = 3 if N.cuda_simulated() else 2000

    def sync() -> None:
        if xp is not np:
            xp.cuda.runtime.deviceSynchronize()

    def many(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(n):
                fn()
            sync()
        return run

    launch = many(lambda: k["empty"][1, 1 if N.cuda_simulated() else 32](a))
    mm = many(lambda: xp.matmul(a, a, out=c))
    launch()
    mm()
    return {"kernel": _median_call_s(launch, 1, reps) / n, "gemm": _median_call_s(mm, 1, reps) / n}


def measure_gpu_rates(batches: tuple[int, ...], overhead_s: dict[str, float], reps: int = 7
                      ) -> tuple[dict[str, dict[int, float]], list[dict[str, Any]]]:
    """GEMM shape-class rates through CuPy (per batch and width, launch overhead taken out) and one
    elementwise rate per kernel, on isolated calls."""
    xp = N.gpu_array_module()
    sim = N.cuda_simulated()
    widths = (16,) if sim else (256, 512, 1024, 2048)
    rates: dict[str, dict[int, float]] = {}
    raw: list[dict[str, Any]] = []

    def timed(fn: Callable[[], Any], n: int) -> float:
        def run() -> None:
            for _ in range(n):
                fn()
            if xp is not np:
                xp.cuda.runtime.deviceSynchronize()
        run()
        return _median_call_s(run, 1, reps) / n

    for kind in M.GEMM_KINDS:
        for b in batches:
            for wd in widths:
                a = xp.ones((b, wd), np.float32)
                w = xp.ones((wd, wd), np.float32)
                o = xp.empty((b, wd), np.float32)
                g = xp.empty((wd, wd), np.float32)
                fn = {"fwd": lambda: xp.matmul(a, w, out=o), "bwd_data": lambda: xp.matmul(a, w.T, out=o),
                      "bwd_weight": lambda: xp.matmul(a.T, o, out=g)}[kind]
                fl = 2.0 * b * wd * wd
                t = timed(fn, 3 if sim else 50)
                r = _rate(fl, t, overhead_s["gemm"]) if not sim else fl / t
                raw.append({"class": kind, "batch": b, "width": wd, "call_s": t,
                            "gflops": None if r is None else r / 1e9})
                if r is not None:
                    rates.setdefault(kind, {})[(b, wd)] = r
    k = N._cuda_kernels()
    n, m = (4, 8) if sim else (1024, 1024)
    z = xp.ones((n, m), np.float32)
    z2 = xp.ones((n, m), np.float32)
    bb = xp.zeros(m, np.float32)
    db = xp.zeros(m, np.float32)
    lab = xp.zeros(n, np.int32)
    loss = xp.zeros(1, np.float32)
    g2, t2 = N._grid2(n, m)
    calls = {
        "bias_relu": (lambda: k["bias_relu"][g2, t2](z, bb), 2.0 * n * m),
        "softmax_xent": (lambda: k["softmax_xent"][N._grid1(n)](z, bb, lab, z2, loss),
                         float(M.SOFTMAX_FLOPS_PER_ELEMENT * n * m)),
        "bias_grad": (lambda: k["bias_grad"][N._grid1(m)](z, db), float(n * m)),
        "relu_bwd_bias_grad": (lambda: k["relu_bwd_bias_grad"][N._grid1(m)](z2, z, db), 2.0 * n * m),
        "sgd_update": (lambda: k["sgd_update"][N._grid1(n * m)](z.reshape(-1), z2.reshape(-1), bb, db,
                                                                np.float32(0)), 2.0 * (n * m + m)),
    }
    for name, (fn, fl) in calls.items():
        t = timed(fn, 1 if sim else 50)
        r = _rate(fl, t, overhead_s["kernel"]) if not sim else fl / t
        if r is None:  # still launch-sized: keep the launch inside the rate (conservative), as on the CPU
            r = fl / t
        raw.append({"class": f"{name}:kernel", "batch": None, "width": m, "call_s": t, "gflops": r / 1e9})
        rates[f"{name}:kernel"] = {(0, 0): r}
    return rates, raw


# ---- the MNIST-shaped epoch and the claims it tests -------------------------------------------
CLAIMS = (
    {"id": "cpu_several_dozen_to_hundreds_slower",
     "text": "CPU training is several dozen to several hundred times slower than GPU training",
     "low": 24.0, "high": 500.0},
    {"id": "mnist_epoch_40s_8cores_vs_2s_rtx4090",
     "text": "an MNIST epoch takes 40 s on 8 CPU cores and 2 s on an RTX 4090",
     "cpu_s": 40.0, "cpu_cores": 8, "gpu_s": 2.0},
)


def run_mnist_epoch(device: str = "cpu", framework: str = "numpy", threads: int = 1,
                    ceilings: M.Ceilings | None = None, seed: int = 0,
                    samples: int = MNIST_SAMPLES, limit_s: float = 20.0) -> dict[str, Any]:
    """One epoch of an MLP 784-256-256-10 over 60,000 synthetic MNIST-shaped inputs (batch 64,
    the last batch partial), timed whole; the model's prediction beside it when ceilings are
    given. On a machine so busy that the epoch passes `limit_s`, it stops there and says so
    (`complete: False`, `epoch_s` then extrapolated from the steps done) rather than blow the
    scan's time budget."""
    rng = np.random.default_rng(seed)
    x = rng.random((samples, MNIST_DIMS[0]), dtype=np.float32)
    labels = rng.integers(0, MNIST_DIMS[-1], samples).astype(np.int32)
    shape = N.NetShape(MNIST_DIMS, MNIST_BATCH)
    net = N.make_network(shape, device=device, framework=framework, threads=threads)
    if device == "gpu" or framework == "torch":
        x, labels = net.to_device(x), net.to_device(labels)
    net.step(x[:MNIST_BATCH], labels[:MNIST_BATCH])  # warm-up: kernels loaded, pages touched
    net.sync()
    t0 = time.perf_counter()
    done = 0
    for s in range(0, samples, MNIST_BATCH):
        net.step(x[s:s + MNIST_BATCH], labels[s:s + MNIST_BATCH])
        done = min(samples, s + MNIST_BATCH)
        if (s // MNIST_BATCH) % 64 == 63 and time.perf_counter() - t0 > limit_s:
            break
    net.sync()
    run_s = time.perf_counter() - t0
    epoch_s = run_s * samples / done
    out: dict[str, Any] = {"device": device, "framework": framework, "threads": threads,
                           "dims": list(MNIST_DIMS), "batch": MNIST_BATCH, "samples": samples,
                           "steps": -(-samples // MNIST_BATCH), "samples_done": done,
                           "complete": done == samples, "epoch_s": epoch_s,
                           "samples_per_s": samples / epoch_s}
    if ceilings is not None:
        full, rest = divmod(samples, MNIST_BATCH)
        disp = M.gpu_dispatch if device == "gpu" else M.cpu_dispatch(threads, N.PARALLEL_MIN_ELEMENTS)
        copy = device == "cpu" and framework == "numpy"  # each batch is copied into the input buffer
        pred = full * M.predict_step(shape, ceilings, disp, copy).predicted_s
        if rest:
            pred += M.predict_step(N.NetShape(MNIST_DIMS, rest), ceilings, disp, copy).predicted_s
        out["predicted_epoch_s"] = pred
        out["error"] = (pred - epoch_s) / epoch_s
    return out


def judge_claims(cpu_epoch: dict[str, Any] | None, gpu_epoch: dict[str, Any] | None,
                 speedups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What this machine shows for each claim (never a verdict without the numbers)."""
    out = []
    c1, c2 = CLAIMS
    if speedups:
        vals = [s["gpu_over_cpu"] for s in speedups if s.get("gpu_over_cpu")]
        lo, hi = (min(vals), max(vals)) if vals else (None, None)
        verdict = ("within" if lo is not None and lo >= c1["low"] and hi <= c1["high"] else "outside")
        out.append({**c1, "measured_min": lo, "measured_max": hi,
                    "finding": f"GPU speed-up over this CPU ranges {lo:.1f}x..{hi:.1f}x over the sweep: "
                               f"{verdict} the claimed range" if lo is not None else "no paired points"})
    else:
        out.append({**c1, "finding": "not testable here: no GPU in this scan"})
    if cpu_epoch:
        thr = cpu_epoch["threads"]
        txt = (f"an MNIST-shaped epoch (MLP {'-'.join(map(str, MNIST_DIMS))}, batch {MNIST_BATCH}) took "
               f"{cpu_epoch['epoch_s']:.2f} s on {thr} CPU thread(s) here, against the claimed "
               f"{c2['cpu_s']:.0f} s on {c2['cpu_cores']} cores")
        if gpu_epoch:
            txt += (f"; {gpu_epoch['epoch_s']:.2f} s on the GPU (claimed {c2['gpu_s']:.0f} s), a ratio of "
                    f"{cpu_epoch['epoch_s'] / gpu_epoch['epoch_s']:.1f}x against the claimed "
                    f"{c2['cpu_s'] / c2['gpu_s']:.0f}x")
        else:
            txt += "; the GPU half is not testable here (no GPU)"
        out.append({**c2, "cpu_epoch_s": cpu_epoch["epoch_s"],
                    "gpu_epoch_s": gpu_epoch["epoch_s"] if gpu_epoch else None, "finding": txt})
    return out


def pair_speedups(cpu_points: list[dict[str, Any]], gpu_points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CPU (all threads) over GPU step time for every (width, batch) measured on both."""
    cpu = {(p["width"], p["batch"]): p for p in cpu_points if p["threads"] == "threads_all"}
    out = []
    for g in gpu_points:
        c = cpu.get((g["width"], g["batch"]))
        if c:
            out.append({"width": g["width"], "batch": g["batch"], "cpu_s": c["measured_s"],
                        "gpu_s": g["measured_s"], "gpu_over_cpu": c["measured_s"] / g["measured_s"]})
    return sorted(out, key=lambda s: (s["batch"], s["width"]))


def gpu_wins_from(speedups: list[dict[str, Any]]) -> dict[str, int | None]:
    """Per batch, the smallest width from which the GPU is faster at every larger width."""
    out: dict[str, int | None] = {}
    for b in sorted({s["batch"] for s in speedups}):
        rows = sorted((s for s in speedups if s["batch"] == b), key=lambda s: s["width"])
        w = None
        for s in reversed(rows):
            if s["gpu_over_cpu"] > 1:
                w = s["width"]
            else:
                break
        out[str(b)] = w
    return out
