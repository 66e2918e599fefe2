"""The training study's prediction (beside stage 4: result -> **train** -> report).

A cache-aware roofline of one training step, computed from the scan alone:

    predicted_s = sum over ops of max(FLOPs / P_class, sum over operands bytes / BW(level, kernel))
                  + sum over ops of the measured call overhead of that op's dispatch

* FLOPs and bytes per op by formula (`step_ops`): GEMM 2*M*N*K FLOPs; bytes are the minimum
  traffic, every operand read or written once (STREAM counting: bytes read + bytes written).
* The level of an operand is the smallest level whose capacity holds the bytes touched since that
  operand was last touched (its LRU reuse footprint, taken cyclically over steps, and including
  the other operands of the ops at both ends, which interleave with it). That is "the smallest
  level holding the op's working set", operand by operand: a layer's weights come back around
  after the whole step, an activation right after the GEMM that wrote it.
* Which STREAM kernel's bandwidth an op gets: the one whose read:write mix is nearest to the
  op's (read 1:0, triad 2:1, copy 1:1, write 0:1). Bandwidth depends on that mix (writes cost a
  read-for-ownership and a write-back), so a GEMM that mostly reads its weights takes "read", the
  SGD update (reads w and g, writes w) is exactly "triad", an in-place ReLU is "copy".
* P_class: the GEMM rate measured for the op's shape class (forward / backward-data /
  backward-weight GEMM at this batch size and thread count) at a width whose operands sit in
  cache, so it is that shape's compute ceiling; elementwise ops likewise have an in-cache rate.
* Private levels (L1, L2) hold `threads` times their capacity when all threads work, the shared
  last cache does not.

Baselines beside it, from the same per-op numbers: `max` = max(sum FLOPs/P, sum bytes/BW) (the
whole step as one roofline point, no overhead) and `sum` = sum FLOPs/P + sum bytes/BW (no
overlap, no overhead). Nothing here sees a measured step time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from memprobe.result import Code, ModelInputs
from memprobe.train.network import ITEM_BYTES, NetShape

# STREAM kernels by the write fraction of their traffic (STREAM counting)
STREAM_MIX = (("read", 0.0), ("triad", 1.0 / 3.0), ("copy", 0.5), ("write", 1.0))
SOFTMAX_FLOPS_PER_ELEMENT = 6  # bias add x2, max, exp, sum, scale (a convention: see tests)
GEMM_KINDS = ("fwd", "bwd_data", "bwd_weight")


class MissingCeiling(ValueError):
    """A ceiling the prediction needs is not in the scan (not measured): no number is invented."""


@dataclass(frozen=True)
class Operand:
    buffer: str
    bytes: int
    write: bool = False
    fresh: bool = False  # new data every step (a batch from a data set): always from memory


@dataclass(frozen=True)
class Op:
    """One call in the step: what it computes and what it touches."""

    name: str
    kind: str  # "gemm" | "elementwise" | "update"
    klass: str  # rate class: a GEMM kind ("fwd"...) or the kernel name ("bias_relu"...)
    flops: float
    operands: tuple[Operand, ...]
    n_elements: int  # the size the network's dispatch looks at (serial vs parallel build)
    kernel: str  # the network kernel behind it: "matmul", "copyto" or an elementwise kernel name
    # rate class by size: a GEMM's sqrt(d_in * d_out); a row-wise elementwise op's row length
    # (softmax's per-row reductions cost more per element on short rows); 0 for the update
    width: int = 0

    @property
    def read_bytes(self) -> int:
        return sum(o.bytes for o in self.operands if not o.write)

    @property
    def write_bytes(self) -> int:
        return sum(o.bytes for o in self.operands if o.write)

    @property
    def bytes(self) -> int:
        return self.read_bytes + self.write_bytes

    @property
    def stream_kernel(self) -> str:
        wf = self.write_bytes / self.bytes if self.bytes else 0.0
        return min(STREAM_MIX, key=lambda km: abs(km[1] - wf))[0]


def step_buffers(shape: NetShape) -> dict[str, int]:
    """Every buffer one step touches, in bytes: input batch, labels, weights, biases, their
    gradients, saved activations (the last is the logits) and the backward deltas."""
    B, dims = shape.batch, shape.dims
    out = {"x": B * dims[0] * ITEM_BYTES, "labels": B * 4}
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        out[f"W{i}"] = d_in * d_out * ITEM_BYTES
        out[f"b{i}"] = d_out * ITEM_BYTES
        out[f"gW{i}"] = d_in * d_out * ITEM_BYTES
        out[f"gb{i}"] = d_out * ITEM_BYTES
        out[f"A{i}"] = B * d_out * ITEM_BYTES
        out[f"dZ{i}"] = B * d_out * ITEM_BYTES
    return out


def working_set_bytes(shape: NetShape) -> int:
    """The step's working set: weights, gradients, saved activations and everything else it
    touches (the sweep places this at multiples of each level's capacity)."""
    return sum(step_buffers(shape).values())


def step_ops(shape: NetShape, input_copy: bool = False) -> list[Op]:
    """The ops of one step in execution order, exactly as `CpuNetwork.step` issues them.
    input_copy: the batch comes from a data set and is first copied into the input buffer."""
    B, dims, L = shape.batch, shape.dims, shape.layers
    buf = step_buffers(shape)

    def r(name: str) -> Operand:
        return Operand(name, buf[name], False)

    def w(name: str) -> Operand:
        return Operand(name, buf[name], True)

    ops: list[Op] = []
    if input_copy:
        ops.append(Op("load_batch", "elementwise", "copy", 0.0,
                      (Operand("x_src", buf["x"], False, True), Operand("labels_src", buf["labels"], False, True),
                       w("x"), w("labels")), B * dims[0], "copyto"))
    for i in range(L):
        d_in, d_out = dims[i], dims[i + 1]
        a_prev = "x" if i == 0 else f"A{i - 1}"
        gw = int(round(math.sqrt(d_in * d_out)))
        ops.append(Op(f"fwd_gemm{i}", "gemm", "fwd", 2.0 * B * d_in * d_out,
                      (r(a_prev), r(f"W{i}"), w(f"A{i}")), B * d_out, "matmul", gw))
        if i < L - 1:
            ops.append(Op(f"bias_relu{i}", "elementwise", "bias_relu", 2.0 * B * d_out,
                          (r(f"A{i}"), r(f"b{i}"), w(f"A{i}")), B * d_out, "bias_relu", d_out))
        else:
            ops.append(Op(f"softmax_xent{i}", "elementwise", "softmax_xent",
                          float(SOFTMAX_FLOPS_PER_ELEMENT * B * d_out),
                          (r(f"A{i}"), r(f"b{i}"), r("labels"), w(f"dZ{i}")), B * d_out, "softmax_xent",
                          d_out))
    ops.append(Op(f"bias_grad{L - 1}", "elementwise", "bias_grad", float(B * dims[L]),
                  (r(f"dZ{L - 1}"), w(f"gb{L - 1}")), B * dims[L], "bias_grad", dims[L]))
    for i in range(L - 1, -1, -1):
        d_in, d_out = dims[i], dims[i + 1]
        a_in = "x" if i == 0 else f"A{i - 1}"
        gw = int(round(math.sqrt(d_in * d_out)))
        ops.append(Op(f"bwd_weight_gemm{i}", "gemm", "bwd_weight", 2.0 * B * d_in * d_out,
                      (r(a_in), r(f"dZ{i}"), w(f"gW{i}")), d_in * d_out, "matmul", gw))
        if i > 0:
            ops.append(Op(f"bwd_data_gemm{i}", "gemm", "bwd_data", 2.0 * B * d_in * d_out,
                          (r(f"dZ{i}"), r(f"W{i}"), w(f"dZ{i - 1}")), B * d_in, "matmul", gw))
            ops.append(Op(f"relu_bwd{i - 1}", "elementwise", "relu_bwd_bias_grad", 2.0 * B * d_in,
                          (r(f"dZ{i - 1}"), r(f"A{i - 1}"), w(f"dZ{i - 1}"), w(f"gb{i - 1}")),
                          B * d_in, "relu_bwd_bias_grad", d_in))
    for i in range(L):
        n = dims[i] * dims[i + 1]
        ops.append(Op(f"sgd_update{i}", "update", "sgd_update", 2.0 * (n + dims[i + 1]),
                      (r(f"W{i}"), r(f"gW{i}"), r(f"b{i}"), r(f"gb{i}"), w(f"W{i}"), w(f"b{i}")),
                      n, "sgd_update"))
    return ops


def reuse_footprints(ops: list[Op]) -> list[dict[str, int]]:
    """Per op, per buffer it touches: bytes of the distinct buffers touched from that buffer's
    previous use (the step repeats, so the search wraps around) up to this op, both ends
    included. The smallest level at least this big still holds the buffer (LRU)."""
    n = len(ops)
    out: list[dict[str, int]] = []
    for k, op in enumerate(ops):
        here: dict[str, int] = {}
        for o in op.operands:
            if o.buffer in here:
                continue
            seen = {p.buffer: p.bytes for p in op.operands}
            for back in range(1, n + 1):
                prev = ops[(k - back) % n]
                for p in prev.operands:
                    seen[p.buffer] = p.bytes
                if any(p.buffer == o.buffer for p in prev.operands):
                    break
            here[o.buffer] = sum(seen.values())
        out.append(here)
    return out


@dataclass
class LevelCeiling:
    name: str
    capacity_bytes: float | None  # None: main memory (holds everything)
    bandwidth_bps: dict[str, float]  # STREAM kernel -> bytes/s at this thread count


@dataclass
class Ceilings:
    """Everything the prediction reads, for one device at one thread count."""

    levels: list[LevelCeiling]
    rates_flops: dict[str, dict[tuple[int, int], float]]  # rate class -> (batch, width) -> FLOP/s
    # s per call: per dispatch ("gemm", "serial", "parallel", "kernel", "copyto"), and per
    # kernel where measured ("serial:softmax_xent"...), which predict_step prefers
    overhead_s: dict[str, float]
    threads: int = 1
    # seconds per byte a GEMM on all threads pays for an operand one core wrote
    # (ModelInputs.cross_core_s_per_byte; 0: not measured)
    cross_core_s_per_byte: float = 0.0

    def level_for(self, footprint_bytes: float) -> LevelCeiling:
        for lv in self.levels:
            if lv.capacity_bytes is None or footprint_bytes <= lv.capacity_bytes:
                return lv
        return self.levels[-1]

    def rate(self, klass: str, batch: int, width: int = 0) -> float:
        """The measured rate of the shape class nearest (batch, then width, in log scale)."""
        table = self.rates_flops.get(klass)
        if not table:
            raise MissingCeiling(f"no measured rate for op class {klass!r}")

        def dist(a: int, b: int) -> float:
            return abs(math.log(max(a, 1)) - math.log(max(b, 1)))
        nb = min({b for b, _ in table}, key=lambda b: dist(b, batch))
        nw = min((w for b, w in table if b == nb), key=lambda w: dist(w, width))
        return table[(nb, nw)]


def ceilings_from_device(device: Any, threads_key: str, n_threads: int,
                         rates_flops: dict[str, dict[tuple[int, int], float]],
                         inputs: ModelInputs | None = None) -> Ceilings:
    """Levels and bandwidths from the scan's DeviceResult (one thread count), plus the rates and
    the per-machine inputs (call overheads, the cross-core figure) the study measured (None:
    none). A flagged bandwidth is replaced by the bound its own rule gives
    (`level_bandwidths`). Raises MissingCeiling naming what is absent."""
    if not device.levels:
        raise MissingCeiling(f"{device.kind}: the scan has no levels")
    bws, _ = level_bandwidths(device, threads_key)
    levels: list[LevelCeiling] = []
    last = len(device.levels) - 1
    for k, (lv, bw) in enumerate(zip(device.levels, bws)):
        cap = None if (k == last or lv.size_bytes is None) else float(lv.size_bytes)
        if cap is not None and n_threads > 1 and _is_private(lv, k, last):
            cap *= n_threads  # each core brings its own
        levels.append(LevelCeiling(lv.name, cap, bw))
    inputs = inputs if inputs is not None else ModelInputs(threads=n_threads)
    return Ceilings(levels, rates_flops, inputs.call_overhead_s, n_threads,
                    inputs.cross_core_or_zero_s_per_byte)


def level_bandwidths(device: Any, threads_key: str) -> tuple[list[dict[str, float]], list[str]]:
    """Per level (nearest first) the STREAM kernels' bandwidths in bytes/s at `threads_key`, and
    a sentence for each figure that was replaced. A figure that breaks physics is never a model
    input, but the rule it broke bounds it: a level faster than the nearer one is fed from that
    one, so the nearer level's figure is its ceiling; all threads slower than one thread ran
    beside a busy neighbour, and all threads move at least what one thread moves, so one
    thread's figure stands for it. A figure with no such bound (or none measured) raises
    MissingCeiling."""
    out: list[dict[str, float]] = []
    notes: list[str] = []

    def value(lv: Any, kern: str, tk: str) -> float | None:
        v = ((lv.bandwidth_gbs or {}).get(kern) or {}).get(tk)
        return float(v) * 1e9 if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else None

    for i, lv in enumerate(device.levels):
        bw: dict[str, float] = {}
        for kern, _ in STREAM_MIX:
            v = value(lv, kern, threads_key)
            if v is None:
                raise MissingCeiling(f"{device.kind} level {lv.name}: no measured {kern} bandwidth at {threads_key}")
            flag = lv.flagged(f"bandwidth/{kern}/{threads_key}") if hasattr(lv, "flagged") else None
            if flag is not None:
                bound: float | None = None
                if flag.code == Code.ALL_BELOW_ONE and not lv.flagged(f"bandwidth/{kern}/threads_1"):
                    bound, why = value(lv, kern, "threads_1"), "one thread's"
                elif flag.code == Code.FARTHER_FASTER and i > 0:
                    bound, why = out[-1][kern], f"the nearer {device.levels[i - 1].name}'s"
                if bound is None:
                    raise MissingCeiling(f"{device.kind} level {lv.name}: {kern} at {threads_key} is flagged "
                                         f"({flag.reason})")
                notes.append(f"{device.kind} {lv.name} {kern} at {threads_key}: flagged ({flag.code.value}), "
                             f"the model reads {why} {bound / 1e9:.3g} GB/s instead")
                v = bound
            bw[kern] = v
        out.append(bw)
    return out, notes


def _is_private(level: Any, index: int, last: int) -> bool:
    if level.sharing in ("private", "shared"):
        return level.sharing == "private"
    # not measured: the usual layout, every cache private except the last one
    return index < last - 1


@dataclass
class OpPrediction:
    name: str
    flops: float
    bytes: float
    compute_s: float
    memory_s: float
    overhead_s: float
    levels: dict[str, str]
    stream_kernel: str
    # the operands' time beyond what the op's measured rate already paid for them: the rate was
    # measured with them in a nearer level (predict.excess_memory_s), or, for the MLP's
    # GEMMs on several threads, in each thread's own cache where one core has just written them
    excess_s: float = 0.0

    @property
    def roofline_s(self) -> float:
        """The op's work: its FLOPs at the measured rate plus the farther operands' extra time,
        or its whole traffic at the levels' bandwidths, whichever is longer."""
        return max(self.compute_s + self.excess_s, self.memory_s)


def work_bound(p: OpPrediction) -> str:
    """What bounds one op's work: "compute" (its rate, more than any level's stream) or the
    name of the level its traffic mostly comes from."""
    if p.compute_s >= max(p.memory_s, p.excess_s):
        return "compute"
    names = list(p.levels.values())
    return max(set(names), key=names.count) if names else "memory"


def op_bound(p: OpPrediction) -> str:
    """What bounds one op: its work's bound, or "overhead" when the call costs more than the work."""
    return "overhead" if p.overhead_s >= p.roofline_s else work_bound(p)


@dataclass
class Prediction:
    predicted_s: float
    predicted_max_s: float
    predicted_sum_s: float
    flops: float
    bytes: float
    compute_s: float  # sum of FLOPs/P
    memory_s: float  # sum of bytes/BW
    roofline_s: float  # sum of per-op max, no overhead
    overhead_s: float
    bound: str  # "compute" | "memory" | "overhead"
    ops: list[OpPrediction] = field(default_factory=list)


ONE_CORE = ("serial", "copyto")  # dispatch classes that run on the calling core alone


def one_core_writes(ops: list[Op], dispatch: Callable[[Op], str]) -> list[dict[str, int]]:
    """Per op, the operands it reads that sit in one core's cache: looking back from it (the
    step repeats, so the search wraps around), a one-core op (a serial kernel, the batch copy)
    wrote them before any op on all threads touched them. {buffer: bytes}."""
    n = len(ops)
    out: list[dict[str, int]] = []
    for k, op in enumerate(ops):
        here: dict[str, int] = {}
        for o in op.operands:
            if o.write or o.fresh:
                continue
            for j in range(1, n + 1):
                prev = ops[(k - j) % n]
                touch = [p for p in prev.operands if p.buffer == o.buffer]
                if not touch:
                    continue
                if dispatch(prev) not in ONE_CORE:
                    break  # the threads have read or written it since: each holds its part
                if any(p.write for p in touch):
                    here[o.buffer] = o.bytes
                    break
        out.append(here)
    return out


def predict_step(shape: NetShape, ceilings: Ceilings, dispatch: Callable[[Op], str],
                 input_copy: bool = False) -> Prediction:
    """The model for one step of `shape`; dispatch(op) names the overhead class of its call.
    On several threads a GEMM also pays, beyond its rate, for the operand bytes one core has
    just written that the other threads read (ceilings.cross_core_s_per_byte per byte):
    its rate was measured with each thread's data in its own cache."""
    ops = step_ops(shape, input_copy)
    feet = reuse_footprints(ops)
    cross = ceilings.cross_core_s_per_byte if ceilings.threads > 1 else 0.0
    written = one_core_writes(ops, dispatch) if cross else [{}] * len(ops)
    others = (ceilings.threads - 1) / ceilings.threads
    preds: list[OpPrediction] = []
    for op, foot, mine in zip(ops, feet, written):
        kern = op.stream_kernel
        mem_s, where = op_memory_s(op, foot, ceilings)
        ov = dispatch(op)
        # elementwise rates are measured per build (serial / prange), GEMM rates per shape class
        klass = f"{op.klass}:{ov}" if f"{op.klass}:{ov}" in ceilings.rates_flops else op.klass
        comp_s = op.flops / ceilings.rate(klass, shape.batch, op.width) if op.flops else 0.0
        extra_s = sum(mine.values()) * others * cross if ov == "gemm" else 0.0
        preds.append(OpPrediction(op.name, op.flops, float(op.bytes), comp_s, mem_s,
                                  ceilings.overhead_s[overhead_key(op, ov, ceilings.overhead_s)], where, kern,
                                  extra_s))
    comp = sum(p.compute_s for p in preds)
    mem = sum(p.memory_s for p in preds)
    roof = sum(p.roofline_s for p in preds)
    over = sum(p.overhead_s for p in preds)
    if over >= roof:
        bound = "overhead"
    else:
        c_share = sum(p.compute_s for p in preds if p.compute_s >= p.memory_s)
        bound = "compute" if c_share >= roof / 2 else "memory"
    return Prediction(predicted_s=roof + over, predicted_max_s=max(comp, mem), predicted_sum_s=comp + mem,
                      flops=sum(p.flops for p in preds), bytes=sum(p.bytes for p in preds),
                      compute_s=comp, memory_s=mem, roofline_s=roof, overhead_s=over, bound=bound,
                      ops=preds)


def op_memory_s(op: Op, footprint: dict[str, int], ceilings: Ceilings) -> tuple[float, dict[str, str]]:
    """An op's memory time: each operand's bytes at the bandwidth of the level that holds its
    reuse footprint (memory for fresh data), for the STREAM kernel nearest the op's read:write
    mix; and the level each operand came from."""
    kern = op.stream_kernel
    mem_s, where = 0.0, {}
    for o in op.operands:
        lv = ceilings.levels[-1] if o.fresh else ceilings.level_for(footprint[o.buffer])
        where[o.buffer] = lv.name
        mem_s += o.bytes / lv.bandwidth_bps[kern]
    return mem_s, where


def overhead_key(op: Op, dispatch_class: str, overhead_s: dict[str, float]) -> str:
    """The measured call overhead an op pays: its kernel's own (with its own arguments) where
    measured, else its dispatch class's."""
    key = f"{dispatch_class}:{op.kernel}"
    if key in overhead_s:
        return key
    if dispatch_class not in overhead_s:
        raise MissingCeiling(f"no measured call overhead for dispatch {dispatch_class!r}")
    return dispatch_class


def step_overhead_s(shape: NetShape, overhead_s: dict[str, float], dispatch: Callable[[Op], str]) -> float:
    """The sum of the step's call overheads, each as measured alone."""
    return sum(overhead_s[overhead_key(op, dispatch(op), overhead_s)] for op in step_ops(shape))


def cpu_dispatch(threads: int, parallel_min_elements: int) -> Callable[[Op], str]:
    """The overhead class of each op as CpuNetwork issues it."""
    def f(op: Op) -> str:
        if op.kernel in ("matmul", "copyto"):
            return "gemm" if op.kernel == "matmul" else "copyto"
        return "parallel" if (threads > 1 and op.n_elements >= parallel_min_elements) else "serial"
    return f


def gpu_dispatch(op: Op) -> str:
    return {"matmul": "gemm", "copyto": "copyto"}.get(op.kernel, "kernel")


# a prediction this far off is flagged with its likely cause (the report, `memprobe train`)
MISS_FRACTION = 0.25


def miss_cause(error: float | None, bound: str | None, overhead_s: float | None, predicted_s: float,
               others_percent: float | None, busy_percent: float) -> str | None:
    """Why a step prediction missed by more than MISS_FRACTION, from what the scan recorded:
    other processes busy beside the study (`others_percent` of a CPU, from `busy_percent` on),
    a step made mostly of call overheads (which vary with the machine's state more than rates
    do), or else a term the model lacks. None for a prediction within MISS_FRACTION."""
    if error is None or not math.isfinite(error) or abs(error) <= MISS_FRACTION:
        return None
    if others_percent is not None and others_percent >= busy_percent:
        return f"a busy machine (others used {others_percent:.0f} % of a CPU)"
    if bound == "overhead" or (overhead_s is not None and overhead_s >= predicted_s / 2):
        return "call overhead (a step of mostly per-op calls)"
    return "the model (the step ran unlike its ops alone)"
