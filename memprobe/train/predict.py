"""One predictor over a captured step (stage 4: result -> **train** -> report): graph + ceilings
+ inputs -> per op the time, what bounds it and the level each operand comes from.

The same op model as the NumPy MLP's (`model.py`), on the ops PyTorch
dispatched for one step (`capture.StepGraph`):

    time(op) = max(work / rate + excess + cross_core, memory) + fresh-page faults + call overhead
    predicted_s = sum over kernels of time(op) + autograd's start + unmodelled ops' replay times

* Each kernel becomes a `model.Op` (`model_ops`): its operands are the storages it reads and
  writes, with the bytes its tensors address; views run no kernel and cost nothing. Each
  operand's level is the smallest level holding its reuse footprint (`model.reuse_footprints`,
  `Ceilings.level_for`, `model.op_memory_s`: cyclic over steps, so a weight comes back after
  the whole step and an activation right after the op that wrote it).
* work / rate: the op replayed alone at its shape (`op_rates.OpRate`: FLOPs for a GEMM,
  elements for the rest, its call overhead taken out). excess: what its operands from memory
  add (`cold_s`: its cold call's extra over the warm one, by their share of its bytes; where no
  cold call was measured, the formula below), plus `excess_memory_s` for its
  inputs from a nearer level farther than the one that held them while the op was replayed
  (the level of its own footprint).
* fresh-page faults: the pages the op's new tensors fault in every step, as this machine's
  allocator does it (`op_rates.measure_step_faults` replays the step's allocations and frees
  alone); without that replay, the mmap-threshold rule on captured storages (a tensor
  over glibc's mmap threshold is mapped fresh every step: `fresh_output_bytes`). A fault is
  time the core spends in the kernel, so it adds to the op rather than overlapping its work:
  on an MLP's AdamW step a 4 MiB temporary, under the threshold, faulted in every step (glibc
  trims the heap's top) and cost 1.6 ms of a 5 ms update.
* cross_core: `model.one_core_writes`' rule on several threads: a GEMM reading what a serial
  op (below PyTorch's grain size) has just written pays for the other threads' reads of it.
* Unmodelled ops (no FLOP formula, not element-wise, not a reduction or copy; or a kernel that
  could not be replayed) are named with their share of the step (their replay time where it
  exists); `coverage` is the modelled share. Nothing here sees a step time.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from memprobe.result import ModelInputs
from memprobe.train import capture as C
from memprobe.train import model as M
from memprobe.train.op_rates import OpRate, op_key, work_of

# elements below which PyTorch runs an element-wise kernel on the calling thread alone
# (at::internal::GRAIN_SIZE)
GRAIN_ELEMENTS = 32768


@dataclass(frozen=True)
class StepInputs:
    """What the predictor reads beside the ceilings: the ops' measured rates (by op_rates.op_key),
    the machine's per-byte and per-call terms at one thread count (result.ModelInputs: its
    thread count, fault and cross-core cost per byte, autograd's start, the optimizer's calls;
    its call overheads are the rates' own here), and the pages this step faults in."""

    rates: dict[str, OpRate]
    machine: ModelInputs = field(default_factory=ModelInputs)
    # bytes of fresh pages each op faults in per step (by op index), as this machine's
    # allocator does it (op_rates.measure_step_faults); None: the mmap-threshold rule
    fault_bytes: dict[int, int] | None = None


@dataclass
class OpTime:
    """One kernel of the step, predicted."""

    index: int
    name: str
    phase: str
    category: str
    flops: float
    bytes: float
    compute_s: float
    excess_s: float
    cross_core_s: float
    memory_s: float
    fault_s: float
    overhead_s: float
    levels: dict[str, str]  # storage id -> the level it comes from
    bound: str  # "compute", a level's name, or "overhead"
    time_s: float


@dataclass
class Unmodelled:
    name: str
    count: int
    time_s: float | None  # their replays' sum; None where an op could not be replayed
    share: float | None
    why: str = ""


@dataclass
class Prediction:
    predicted_s: float
    compute_s: float
    memory_s: float
    overhead_s: float
    flops: float
    bytes: float
    coverage: float  # the modelled share of the predicted step
    bound: str
    ops: list[OpTime] = field(default_factory=list)
    unmodelled: list[Unmodelled] = field(default_factory=list)


def model_ops(graph: C.StepGraph) -> list[tuple[C.CapturedOp, M.Op]]:
    """The step's kernels as `model.Op`s: one operand per storage read and per storage written,
    with the bytes its tensors address (views left out: they run no kernel)."""
    out = []
    for op in graph.ops:
        if not op.kernel:
            continue
        operands = tuple([M.Operand(str(s), b, False) for s, b in op.read_bytes().items()]
                         + [M.Operand(str(s), b, True) for s, b in op.write_bytes().items()])
        kind = "gemm" if op.category == "gemm" else ("update" if op.phase == "optimizer" else "elementwise")
        out.append((op, M.Op(op.name, kind, f"captured|{op_key(op)}", float(op.flops or 0.0), operands,
                             op.elements, op.name)))
    return out


def dispatch(op: M.Op) -> str:
    """The captured op's dispatch class for `model.one_core_writes`: a GEMM runs on all threads,
    an element-wise kernel below GRAIN_ELEMENTS on the calling thread alone."""
    if op.kind == "gemm":
        return "gemm"
    return "serial" if op.n_elements < GRAIN_ELEMENTS else "parallel"


def compute_s(op: C.CapturedOp, rate: OpRate | None) -> float:
    """The op's work at its measured rate (0 for a call with no work)."""
    w = work_of(op)
    if w <= 0 or rate is None or rate.rate is None:
        return 0.0
    return w / rate.rate


def from_memory(mop: M.Op, where: dict[str, str], ceilings: M.Ceilings) -> set[str]:
    """The op's operands (storage ids) that the step brings from the farthest level, memory."""
    far = ceilings.levels[-1].name
    return {o.buffer for o in mop.operands if where.get(o.buffer) == far}


# glibc's largest dynamic mmap threshold (64-bit): a tensor above it is mapped fresh when
# allocated and unmapped when freed, so a step faults its pages in again every time
MMAP_THRESHOLD_BYTES = 32 << 20


def excess_memory_s(op: M.Op, footprint: dict[str, int], ceilings: M.Ceilings, at: M.LevelCeiling | None) -> float:
    """The inputs' time beyond what the op's rate already paid: its rate was measured with its
    operands in level `at`, so each input that the step brings from a farther level costs its
    bytes at that level's bandwidth less at `at`'s, on top of the op's compute (a kernel that
    ran at its rate from `at` waits for the farther level's reads). Outputs add nothing: stores
    retire into the caches, which write back behind the work (their bytes stay in the op's
    memory time, the roofline's other side)."""
    if at is None:
        return 0.0
    kern = op.stream_kernel
    extra = 0.0
    for o in op.operands:
        if o.write:
            continue
        lv = ceilings.levels[-1] if o.fresh else ceilings.level_for(footprint[o.buffer])
        extra += o.bytes * max(0.0, 1 / lv.bandwidth_bps[kern] - 1 / at.bandwidth_bps[kern])
    return extra


def excess_s(mop: M.Op, footprint: dict[str, int], ceilings: M.Ceilings, rate: OpRate | None,
             leave_out: set[str] = frozenset()) -> float:
    """excess_memory_s against the level that held the op's tensors while it was
    replayed alone (the level of its own footprint), over its operands but `leave_out` (those
    `cold_s` already prices)."""
    if rate is None or rate.call_s is None or rate.work <= 0:
        return 0.0
    if leave_out:
        mop = dataclasses.replace(mop, operands=tuple(o for o in mop.operands if o.buffer not in leave_out))
    return excess_memory_s(mop, footprint, ceilings, ceilings.level_for(rate.bytes))


def cold_s(mop: M.Op, far: set[str], rate: OpRate | None) -> float | None:
    """What the op's operands from memory add to its work: its cold call (every operand in
    memory) less its warm one (back to back, its operands wherever its replay left them), times
    the share of its bytes the step brings from memory. Measured, so it holds where the level a
    VM's last cache reads at moves (the replay's tensors sat in whatever the host's last cache
    gave it then) and where a kernel's stores wait for memory (a weight gradient written into a
    tensor the caches no longer hold). None where the rate has no cold call: the excess formula
    (`excess_s`) prices those operands instead."""
    if rate is None or rate.call_s is None or rate.cold_call_s is None:
        return None
    total = sum(o.bytes for o in mop.operands)
    if total <= 0 or not far:
        return 0.0
    share = sum(o.bytes for o in mop.operands if o.buffer in far) / total
    return share * max(0.0, rate.cold_call_s - rate.call_s)


def born_storages(graph: C.StepGraph) -> dict[int, set[int]]:
    """Per op index, the storages it allocates: those whose first appearance in the step is
    as its output (parameters, buffers, states and inputs exist before the step)."""
    seen: set[int] = {sid for sid, s in graph.storages.items() if s.role in ("param", "buffer", "state", "input")}
    out: dict[int, set[int]] = {}
    for op in graph.ops:
        new = {m.storage for m in op.outputs if m.storage not in seen}
        seen |= {m.storage for m in op.inputs + op.outputs}
        if new and op.kernel:
            out[op.index] = new
    return out


def fresh_output_bytes(op: C.CapturedOp, graph: C.StepGraph, born: dict[int, set[int]]) -> int:
    """The mmap-threshold rule on a captured op: the bytes of the storages it allocates
    that are over glibc's mmap threshold (mapped fresh, so faulted in, every step)."""
    return sum(graph.storages[s].nbytes for s in born.get(op.index, ())
               if graph.storages[s].nbytes > MMAP_THRESHOLD_BYTES)


def fault_s(op: C.CapturedOp, graph: C.StepGraph, born: dict[int, set[int]], inputs: StepInputs) -> float:
    """The op's fresh-page faults per step: the bytes the allocator's replay saw it fault in
    (inputs.fault_bytes), else `fresh_output_bytes`; at the measured seconds per byte."""
    if inputs.fault_bytes is not None:
        return inputs.fault_bytes.get(op.index, 0) * inputs.machine.fault_s_per_byte
    return fresh_output_bytes(op, graph, born) * inputs.machine.fault_s_per_byte


def cross_core_s(mops: list[M.Op], inputs: StepInputs) -> list[float]:
    """Per op, model.one_core_writes' term: on several threads a GEMM pays, per byte of an
    operand a serial op just wrote, the other threads' share at cross_core_s_per_byte."""
    threads, cross = inputs.machine.threads, inputs.machine.cross_core_or_zero_s_per_byte
    if threads <= 1 or cross <= 0:
        return [0.0] * len(mops)
    others = (threads - 1) / threads
    written = M.one_core_writes(mops, dispatch)
    return [sum(w.values()) * others * cross if dispatch(op) == "gemm" else 0.0
            for op, w in zip(mops, written)]


def update_overhead_s(graph: C.StepGraph, inputs: StepInputs) -> float | None:
    """Each optimizer kernel's share of the optimizer's calls: its fixed cost plus its cost per
    parameter tensor (measured on tiny tensors, so all of it is calls: the single-tensor loop's
    Python as well as its kernels' dispatch), over the kernels it runs. None without that figure."""
    if inputs.machine.update_call_s is None:
        return None
    n_ops = sum(1 for o in graph.ops if o.phase == "optimizer" and o.kernel)
    if not n_ops:
        return None
    fixed, per_tensor = inputs.machine.update_call_s
    n_params = sum(1 for s in graph.storages.values() if s.role == "param")
    return (fixed + per_tensor * n_params) / n_ops


def op_time(compute: float, excess: float, cross: float, memory: float, fault: float, overhead: float) -> float:
    """One op: the longer of its work (compute and what its farther operands add) and its
    traffic (the levels' bandwidths), plus its page faults (the core maps pages instead of
    working: nothing overlaps them), plus its call."""
    return max(compute + excess + cross, memory) + fault + overhead


def predict(graph: C.StepGraph, ceilings: M.Ceilings, inputs: StepInputs) -> Prediction:
    """The step's predicted time, per op, from the graph, the scan's levels and the measured
    rates. Pure."""
    pairs = model_ops(graph)
    mops = [m for _, m in pairs]
    feet = M.reuse_footprints(mops)
    cross = cross_core_s(mops, inputs)
    born = born_storages(graph)
    upd_over = update_overhead_s(graph, inputs)
    ops: list[OpTime] = []
    unknown: dict[str, list[Any]] = {}
    for (op, mop), foot, cc in zip(pairs, feet, cross):
        rate = inputs.rates.get(op_key(op))
        if not op.modelled or rate is None or (rate.call_s is None and work_of(op) > 0):
            why = "no FLOP or element count" if not op.modelled else (
                "not measured" if rate is None else f"could not be replayed ({rate.why})")
            u = unknown.setdefault(op.name, [0, 0.0, why])
            u[0] += 1
            if u[1] is not None:
                u[1] = None if rate is None or rate.call_s is None else u[1] + rate.call_s
            continue
        mem, where = M.op_memory_s(mop, foot, ceilings)
        fault = fault_s(op, graph, born, inputs)
        comp = compute_s(op, rate)
        far = from_memory(mop, where, ceilings)
        cold = cold_s(mop, far, rate)  # None: the formula prices the operands from memory too
        exc = excess_s(mop, foot, ceilings, rate, leave_out=far if cold is not None else frozenset()) + (cold or 0.0)
        over = upd_over if (upd_over is not None and op.phase == "optimizer") else rate.overhead_s
        p = M.OpPrediction(op.name, mop.flops, float(mop.bytes), comp, mem, over, where, mop.stream_kernel,
                           exc + cc)
        t = op_time(comp, exc, cc, mem, fault, over)
        ops.append(OpTime(op.index, op.name, op.phase, op.category, mop.flops, float(mop.bytes), comp, exc, cc,
                          mem, fault, over, where, M.op_bound(p), t))
    modelled_s = sum(o.time_s for o in ops) + inputs.machine.backward_call_s
    unmod_s = sum(u[1] for u in unknown.values() if u[1] is not None)
    total = modelled_s + unmod_s
    unmodelled = [Unmodelled(name, n, t, (t / total) if t is not None and total > 0 else None, why)
                  for name, (n, t, why) in sorted(unknown.items(), key=lambda kv: -(kv[1][1] or 0.0))]
    comp = sum(o.compute_s + o.excess_s + o.cross_core_s for o in ops)
    mem = sum(o.memory_s for o in ops)
    over = sum(o.overhead_s for o in ops) + inputs.machine.backward_call_s
    work = sum(o.time_s - o.overhead_s for o in ops)
    if over >= work:
        bound = "overhead"
    else:
        c_share = sum(o.time_s - o.overhead_s for o in ops if o.bound == "compute")
        bound = "compute" if c_share >= work / 2 else "memory"
    # ops with no replay time are listed (share None) but cannot enter the share
    coverage = modelled_s / total if total > 0 else 1.0
    return Prediction(total, comp, mem, over, sum(o.flops for o in ops), sum(o.bytes for o in ops), coverage,
                      bound, ops, unmodelled)


def measure_step_samples(model: Any, inputs: Any, loss_fn: Callable[[Any], Any] | None, optimizer: Any,
                         steps: int = 5, warmup: int = 2) -> list[float]:
    """Seconds of each of `steps` real training steps (capture.run_step: zero_grad, forward and
    loss, backward, the optimizer's step) after `warmup` steps. `optimizer`: an optimizer, or
    "sgd" / "adamw" (capture.make_optimizer, as the captured step)."""
    from memprobe.train import torch_families as TF
    from memprobe.train.family_sweep import time_steps

    TF.flush_denormals()
    model.train()
    opt = C.make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad]) \
        if isinstance(optimizer, str) else optimizer
    return list(time_steps(lambda: C.run_step(model, inputs, loss_fn, opt), steps, warmup))


def measure_step(model: Any, inputs: Any, loss_fn: Callable[[Any], Any] | None, optimizer: Any,
                 steps: int = 5, warmup: int = 2) -> float:
    """Median seconds of a real training step (`measure_step_samples`)."""
    return statistics.median(measure_step_samples(model, inputs, loss_fn, optimizer, steps, warmup))


def group_ops(pred: Prediction) -> list[dict[str, Any]]:
    """The predicted ops grouped by operator: count, FLOPs, bytes, the level most of their bytes
    come from, what bounds most of their time, their time and share of the step."""
    groups: dict[str, list[OpTime]] = {}
    for o in pred.ops:
        groups.setdefault(o.name, []).append(o)
    out = []
    for name, ops in groups.items():
        t = sum(o.time_s for o in ops)
        lv: Counter[str] = Counter()
        bd: Counter[str] = Counter()
        for o in ops:
            for lname in o.levels.values():
                lv[lname] += o.bytes / max(1, len(o.levels))
            bd[o.bound] += o.time_s
        out.append({"op": name, "count": len(ops), "flops": sum(o.flops for o in ops),
                    "bytes": sum(o.bytes for o in ops), "level": lv.most_common(1)[0][0] if lv else None,
                    "bound": bd.most_common(1)[0][0] if bd else None, "predicted_s": t,
                    "share": t / pred.predicted_s if pred.predicted_s > 0 else 0.0})
    return sorted(out, key=lambda g: -g["predicted_s"])
