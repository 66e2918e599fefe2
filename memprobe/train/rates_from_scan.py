"""A captured step's inputs read from a scan's rate table (stage 4: result -> **train** -> report:
the inputs side of `memprobe predict SPEC --on SCAN`). Pure: nothing is run or timed.

After capture a network's op graph (`capture.StepGraph`) is the same on every machine; what ties
a prediction to one machine is each op's rate and call overhead there. `memprobe predict`
measures those here (`op_rates`); a scan's `RateTable` (`scan/rates.py`) carries enough to build
them for the scan's machine instead, each captured kernel's `OpRate` made from the table:

* a fused CPU attention op from its ladder's entry of the same direction, causality and dtype
  nearest in log batch x heads, sequence and head dim;
* a GEMM-like op (mm, addmm, bmm, baddbmm, convolution forward and backward) from its ladder's
  entry nearest in shape: the smallest sum of |log| ratios of m, n and k (a convolution by its
  GEMM-equivalent m, n, k, and its direction), of the op's dtype; its FLOPs at that entry's
  GFLOP/s, scaled by nothing fitted (a product's entry above the scan's FMA ceiling breaks
  physics and is left out, `plausible`);
* an element-wise op from its class (`op_class`) at the level its own footprint (its tensors'
  distinct bytes, `op_rates.replay_bytes`) sits in at this thread count
  (`Ceilings.level_for`): the streaming classes (elementwise, copy, update) as the class
  kernel's GB/s over the op's own bytes per element (STREAM counting), the row-wise ones
  (reduction, norm, softmax, gather) and those a function or a generator bounds, not bytes
  (transcendental activations: GELU, SiLU, tanh...; random fills: dropout's mask) as elements
  per second;
* every op's call overhead from its class's, an allocation's from "call"; autograd's start, the
  optimizer's calls, a fresh page's cost and the cross-core term from the table's thread count.

The OpRate's footprint is the op's own, so the predictor's excess term counts what the step
brings from farther than that level, as it does for a replay. Whatever the table cannot give
(an op class with no rate, a dtype with no ladder, no table at all: a CPU scan made without
PyTorch, a scan from before rate tables) is left out and named in `missing`, one line each,
never filled with a guess: a prediction made with anything missing is partial.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from memprobe.result import ModelInputs
from memprobe.train import capture as C
from memprobe.train import model as M
from memprobe.train.op_rates import OpRate, op_key, replay_bytes, work_of
from memprobe.train.predict import StepInputs

GEMM_PACKETS = {"mm": "gemm", "addmm": "gemm", "bmm": "bmm", "baddbmm": "bmm",
                "convolution": "conv", "convolution_backward": "conv"}
STREAMING = frozenset({"elementwise", "copy", "update"})  # rate by bytes: the op's own bytes per element
GATHERS = frozenset({"embedding", "index_select", "gather", "index", "_unsafe_index", "scatter", "scatter_add",
                     "scatter_add_", "index_put_", "index_put", "_index_put_impl_", "embedding_dense_backward"})
# element-wise ops whose cost per element is a transcendental function's, not their bytes'
# (tanh's and sigmoid's backward are not: a polynomial of the saved output, as fast as a multiply)
TRANSCENDENTAL = frozenset({"gelu", "gelu_backward", "silu", "silu_backward", "sigmoid", "tanh", "exp", "log", "erf",
                            "softplus", "softplus_backward", "mish", "mish_backward", "elu", "elu_backward",
                            "log_sigmoid_forward", "log_sigmoid_backward"})
# random fills: their generator's cost per element
RANDOM = frozenset({"bernoulli_", "bernoulli", "native_dropout", "uniform_", "normal_", "rand", "randn", "rand_like",
                    "randn_like", "exponential_", "random_"})
PEAK_SLACK = 1.1  # a product may beat the FMA chains' figure by this much (their own noise), no more
NO_TABLE = ("the scan has no rate table (made by memprobe {version}, before rate tables, or its rates "
            "stage did not run): re-run `memprobe scan` on that machine with this memprobe")


def op_class(op: C.CapturedOp) -> str | None:
    """The rate-table class of a captured kernel: "gemm", "bmm", "conv", "attention", one of
    result.RATE_CLASSES, "call" (a call and nothing else), or the packet's name for a GEMM-like
    op with no ladder; None for an unmodelled op."""
    p = op.packet
    if op.category == "gemm":
        return "attention" if p in C.SDPA_CPU else GEMM_PACKETS.get(p, p)
    if op.category == "call":
        return "call"
    if p in RANDOM:
        return "random"
    if p in TRANSCENDENTAL and op.phase != "optimizer":
        return "transcendental"
    if op.category == "pointwise":
        return "update" if op.phase == "optimizer" else "elementwise"
    if op.category == "reduction":
        if p in GATHERS:
            return "gather"
        if "norm" in p:
            return "norm"
        if "softmax" in p:
            return "softmax"
        return "reduction"
    if op.category == "copy":
        return "gather" if p in GATHERS else "copy"
    return None


def gemm_dims(op: C.CapturedOp) -> tuple[int, int, int] | None:
    """(m, n, k) of a matrix product, or a convolution's GEMM equivalent (m: batch x output
    pixels, n: output channels, k: input channels per group x kernel area)."""
    p, ins = op.packet, op.inputs
    try:
        if p in ("mm", "bmm"):
            a, b = ins[0], ins[1]
        elif p in ("addmm", "baddbmm"):
            a, b = ins[1], ins[2]
        elif p == "convolution":
            w, out = ins[1], op.outputs[0]
            return (out.shape[0] * math.prod(out.shape[2:]), w.shape[0], w.shape[1] * math.prod(w.shape[2:]))
        elif p == "convolution_backward":
            go, w = ins[0], ins[2]
            return (go.shape[0] * math.prod(go.shape[2:]), w.shape[0], w.shape[1] * math.prod(w.shape[2:]))
        else:
            return None
        return (a.shape[-2], b.shape[-1], a.shape[-1])
    except (IndexError, ValueError):
        return None


def attention_dims(op: C.CapturedOp) -> tuple[int, int, int, bool] | None:
    """(batch x heads, sequence, head dim, causal) of a fused CPU attention op, forward or backward."""
    back = op.packet.endswith("_backward")
    try:
        q = op.inputs[1] if back else op.inputs[0]
        kw = dict(op.kwargs)
        causal = kw.get("is_causal", op.args[7 if back else 4] if len(op.args) > (7 if back else 4) else False)
        return (math.prod(q.shape[:-2]), q.shape[-2], q.shape[-1], bool(causal))
    except (IndexError, ValueError, TypeError):
        return None


def _log_distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return sum(abs(math.log(max(x, 1)) - math.log(max(y, 1))) for x, y in zip(a, b))


def nearest_entry(entries: list[Any], dims: tuple[int, int, int], dtype: str, direction: str | None = None) -> Any:
    """The ladder entry of `dtype` (and a convolution's `direction`) nearest `dims` in log
    distance, with a measured rate; None where there is none."""
    pool = [e for e in entries if e.dtype == dtype and e.gflops and (direction is None or e.direction == direction)]
    if not pool:
        return None
    return min(pool, key=lambda e: _log_distance((e.m, e.n, e.k), dims))


def fma_peak_gflops(device: Any, threads_key: str) -> float | None:
    """The scan's float32 FMA ceiling at `threads_key` (unflagged), or None."""
    comp = getattr(device, "compute", None)
    if comp is None:
        return None
    v = (comp.fma.get("float32") or {}).get(threads_key)
    if not v or comp.flagged(f"fma/float32/{threads_key}"):
        return None
    return float(v)


def plausible(entries: list[Any], peak_gflops: float | None) -> list[Any]:
    """A matrix-product ladder without entries above the scan's FMA ceiling (PEAK_SLACK over it):
    a figure that breaks physics is never a model input. Convolutions are not checked (a
    Winograd or FFT kernel does fewer FLOPs than the formula counts)."""
    if not peak_gflops:
        return list(entries)
    return [e for e in entries if not e.gflops or e.gflops <= PEAK_SLACK * peak_gflops]


def class_rate(rows: list[Any], level: str) -> Any:
    """The class's entry at `level`; None where that level was not measured."""
    return next((r for r in rows if r.level == level and r.elements_per_s), None)


def stream_bytes(op: C.CapturedOp) -> int:
    """The op's traffic by STREAM counting: bytes it reads plus bytes it writes."""
    return sum(op.read_bytes().values()) + sum(op.write_bytes().values())


def _ceilings(device: Any, threads_key: str, n: int) -> M.Ceilings:
    return M.ceilings_from_device(device, threads_key, n, {})


def _dtype(op: C.CapturedOp) -> str:
    return op.inputs[0].dtype if op.inputs else "float32"


def op_rate_from_table(op: C.CapturedOp, tr: Any, ceilings: M.Ceilings,
                       peak_gflops: float | None = None) -> tuple[OpRate | None, str | None]:
    """(the op's OpRate built from one thread count's table, None) or (None, what is missing).
    `peak_gflops`: the scan's FMA ceiling at this thread count (GEMM entries above it are left out)."""
    klass = op_class(op)
    if klass is None:
        return None, None  # unmodelled: the predictor names it
    if klass not in ("gemm", "bmm", "conv", "attention", "call") and klass not in (tr.classes or {}):
        return None, f"{klass}: no rate in the scan's table"
    over = (tr.call_overhead_s or {}).get(klass)
    if over is None:
        return None, f"{klass}: no call overhead in the scan's table"
    work = work_of(op)
    n = tr.threads
    key, nbytes = op_key(op), replay_bytes(op)
    if klass == "call" or work <= 0:
        return OpRate(key, op.name, over, over, work, nbytes, n, "rate table"), None
    if klass == "attention":
        dims4 = attention_dims(op)
        if dims4 is None:
            return None, f"attention {op.name}: its shape cannot be read"
        direction = "backward" if op.packet.endswith("_backward") else "forward"
        pool = [e for e in getattr(tr, "attention", []) or [] if e.gflops and e.direction == direction
                and e.causal == dims4[3] and e.dtype == _dtype(op)]
        if not pool:
            return None, (f"attention {direction}{' causal' if dims4[3] else ''} {_dtype(op)}: "
                          "no rate in the scan's table")
        e = min(pool, key=lambda e: _log_distance((e.batch, e.seq, e.head_dim), dims4[:3]))
        rate = e.gflops * 1e9
    elif klass in ("gemm", "bmm", "conv"):
        dims = gemm_dims(op)
        if dims is None:
            return None, f"{klass} {op.name}: its shape cannot be read"
        ladder = {"gemm": plausible(tr.gemm, peak_gflops), "bmm": plausible(tr.bmm, peak_gflops),
                  "conv": tr.conv}[klass]
        direction = ("backward" if op.packet.endswith("_backward") else "forward") if klass == "conv" else None
        e = nearest_entry(ladder, dims, _dtype(op), direction)
        if e is None:
            what = f"{klass} {direction}" if direction else klass
            return None, f"{what} {_dtype(op)}: no rate in the scan's table"
        rate = e.gflops * 1e9
    else:
        level = ceilings.level_for(nbytes).name
        own = (getattr(tr, "operators", None) or {}).get(op.packet) if klass == "transcendental" else None
        row = class_rate(own or tr.classes[klass], level)
        if row is None:
            return None, f"{klass} at {level}: no rate in the scan's table"
        if klass in STREAMING:
            b = stream_bytes(op)
            if b <= 0:
                return None, f"{klass} {op.name}: no bytes to scale by"
            rate = row.gbs * 1e9 * work / b  # elements/s at the class's GB/s
        else:
            rate = row.elements_per_s
    return OpRate(key, op.name, over + work / rate, over, work, nbytes, n, "rate table"), None


def scan_threads(device: Any, threads_key: str) -> int | None:
    """The thread count a scan's figure at `threads_key` ran on: the rate table's, else the
    bandwidth stage's."""
    rates = getattr(device, "rates", None)
    if rates is not None and threads_key in rates.threads:
        return rates.threads[threads_key].threads
    if threads_key == "threads_1":
        return 1
    bw = getattr(device, "bandwidth", None)
    if bw is not None and bw.levels:
        return bw.levels[0].threads_all
    return device.declared.cores_usable if device.declared else None


def _all_threads_bound(r: OpRate, op: C.CapturedOp, table: Any, device: Any, peak_1: float | None) -> OpRate:
    """An all-thread rate below the one-thread rate of the same op ran beside a busy neighbour
    (the rule plausibility.py applies to bandwidth): all threads do the work at least as fast
    as one, so one thread's work time stands for it, beside the all-thread call overhead."""
    tr1 = table.threads.get("threads_1")
    if tr1 is None or r.call_s is None:
        return r
    r1, _ = op_rate_from_table(op, tr1, _ceilings(device, "threads_1", 1), peak_1)
    if r1 is None or r1.call_s is None:
        return r
    work_all, work_1 = r.call_s - r.overhead_s, r1.call_s - r1.overhead_s
    if work_1 >= work_all:
        return r
    return OpRate(r.key, r.op, r.overhead_s + work_1, r.overhead_s, r.work, r.bytes, r.threads,
                  "rate table (one thread's: the all-thread figure ran below it)")


def step_inputs_from_scan(graph: C.StepGraph, device: Any, threads_key: str,
                          memprobe_version: str = "", notes: list[str] | None = None) -> tuple[StepInputs, list[str]]:
    """The predictor's inputs for `graph` on the machine `device` (a scan's DeviceResult) at
    `threads_key`, from its rate table alone, and the list of what the table lacks (one line
    each; empty: nothing missing). Raises model.MissingCeiling where the device has no levels."""
    n = scan_threads(device, threads_key) or 1
    ceilings = _ceilings(device, threads_key, n)
    table = getattr(device, "rates", None)
    if table is None:
        return StepInputs({}, ModelInputs(n)), [NO_TABLE.format(version=memprobe_version or "unknown")]
    missing: list[str] = list(table.absent)
    tr = table.threads.get(threads_key)
    if tr is None:
        have = ", ".join(table.threads) or "none"
        return StepInputs({}, ModelInputs(n)), missing + [f"the scan's rate table has no {threads_key} rates (it has {have})"]
    peak = fma_peak_gflops(device, threads_key)
    peak_1 = fma_peak_gflops(device, "threads_1")
    replaced = 0
    rates: dict[str, OpRate] = {}
    lacks: Counter[str] = Counter()
    per_key = Counter(op_key(o) for o in graph.ops if o.kernel)
    done: set[str] = set()
    for op in graph.ops:
        if not op.kernel:
            continue
        key = op_key(op)
        if key in done:
            continue
        done.add(key)
        r, why = op_rate_from_table(op, tr, ceilings, peak)
        if r is not None and threads_key == "threads_all":
            bounded = _all_threads_bound(r, op, table, device, peak_1)
            replaced += bounded is not r
            r = bounded
        if r is not None:
            rates[key] = r
        elif why is not None:
            lacks[why] += per_key[key]
    unmodelled = Counter(o.packet for o in graph.ops if o.kernel and not o.modelled)
    for why, count in lacks.items():
        line = f"{why} ({count} kernel{'s' if count != 1 else ''})"
        if line not in missing:
            missing.append(line)
    if unmodelled:
        names = ", ".join(f"{p} x{c}" for p, c in unmodelled.most_common())
        missing.append(f"unmodelled ops, no class to read a rate for: {names}")
    update = (tr.update_call_s or {}).get(graph.optimizer)
    machine = ModelInputs(
        threads=n,
        fault_s_per_byte=tr.fault_s_per_byte or 0.0,
        cross_core_s_per_byte=tr.cross_core_s_per_byte or 0.0,
        backward_call_s=tr.backward_call_s or 0.0,
        update_call_s=(float(update[0]), float(update[1])) if update and len(update) == 2 else None)
    # the allocator's replay cannot run for a machine we do not have: the mmap rule (fault_bytes None)
    inputs = StepInputs(rates=rates, machine=machine, fault_bytes=None)
    if replaced and notes is not None:
        notes.append(f"{replaced} distinct op(s) read one thread's rate: their all-thread figure in the scan ran "
                     "below it (a busy neighbour during the scan's rates stage)")
    if tr.backward_call_s is None and any(o.phase == "backward" for o in graph.ops):
        missing.append("autograd's start per backward call: not in the scan's rate table")
    if tr.fault_s_per_byte is None and table.backend == "cpu":
        missing.append("a fresh page's cost per byte: not in the scan's rate table")
    return inputs, missing
