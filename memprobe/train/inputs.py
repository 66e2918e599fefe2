"""The predictor's inputs for one captured step, measured here (beside stage 4: result ->
**train** -> report: the inputs side of `predict.predict`). Needs the optional extra
(`memprobe[torch]`).

One function gathers them, for every caller that predicts a captured step (`memprobe predict`
through `spec.run_predict`, the family sweep, the seed table): each distinct kernel's rate
(`op_rates.measure_graph_rates`), a fresh page's cost per byte and the pages each op faults in
per step on this machine's allocator (`torch_rates.measure_fault_s_per_byte`,
`op_rates.measure_step_faults`), autograd's start (`torch_rates.measure_backward_call_s`), the
cross-core read a GEMM pays on several threads (`sweep.measure_cross_core_s_per_byte`), and the
optimizer's calls on tiny tensors (`torch_rates.measure_update`). The caller holds the thread
count (`spec.torch_threads`). Typed records, never a step time.
"""

from __future__ import annotations

from typing import Any, Callable

from memprobe.result import ModelInputs
from memprobe.train import capture as C

ProgressFn = Callable[[str, int, int, str], None]


def _noop(stage: str, done: int, total: int, msg: str = "") -> None:
    return None


def measure_step_inputs(graph: C.StepGraph, threads: int, optimizer: str | None = None, cache: Any = None,
                        progress: ProgressFn = _noop, step_faults: bool = True) -> Any:
    """`predict.StepInputs` for `graph` at `threads` (the thread count in force), measured now.

    `optimizer`: the step's ("sgd" | "adamw"; default the graph's). `cache`: an
    `op_rates.RateCache` (a rate measured before at this thread count is reused; None measures
    every distinct kernel now). `step_faults`: replay the step's allocations for the pages each
    op faults in (False where the step's tensors do not fit in memory: the predictor then reads
    the mmap-threshold rule)."""
    from memprobe.train import op_rates as R
    from memprobe.train import predict as P
    from memprobe.train import torch_rates as TR
    from memprobe.train.sweep import measure_cross_core_s_per_byte

    fault = TR.measure_fault_s_per_byte()
    backward = TR.measure_backward_call_s()
    cross = measure_cross_core_s_per_byte(threads) if threads > 1 else 0.0
    rates = R.measure_graph_rates(graph, threads, cache, fault, progress)
    fault_bytes = R.measure_step_faults(graph) if step_faults else None
    fixed, per_tensor = TR.measure_update(optimizer or graph.optimizer)
    machine = ModelInputs(threads, cross_core_s_per_byte=cross, backward_call_s=backward, fault_s_per_byte=fault,
                          update_call_s=(fixed, per_tensor))
    return P.StepInputs(rates, machine, fault_bytes)


def aligned_ops(full: C.StepGraph, check: C.StepGraph) -> dict[int, C.CapturedOp]:
    """Per kernel of `full` (by index), its counterpart in `check`, the same network's step at a
    smaller shape: the two kernel sequences aligned by operator and phase (difflib's longest
    matching blocks: a batch of one leaves out a few copies a larger batch makes); a kernel left
    unmatched takes the check's nearest kernel of the same operator and phase, by position."""
    import difflib

    fk, ck = full.kernels, check.kernels
    tags_f = [(o.name, o.phase) for o in fk]
    tags_c = [(o.name, o.phase) for o in ck]
    out: dict[int, C.CapturedOp] = {}
    for a, b, n in difflib.SequenceMatcher(None, tags_f, tags_c, autojunk=False).get_matching_blocks():
        for i in range(n):
            out[fk[a + i].index] = ck[b + i]
    by_tag: dict[tuple[str, str], list[int]] = {}
    for j, t in enumerate(tags_c):
        by_tag.setdefault(t, []).append(j)
    for i, o in enumerate(fk):
        if o.index in out or tags_f[i] not in by_tag:
            continue
        pos = i * len(ck) / max(1, len(fk))
        out[o.index] = ck[min(by_tag[tags_f[i]], key=lambda j: abs(j - pos))]
    return out


def projected_inputs(full: C.StepGraph, check: C.StepGraph, check_inputs: Any) -> Any:
    """`predict.StepInputs` for `full` from those measured on `check` (the same network at a
    size this machine replays in seconds): each full-size kernel runs at its check counterpart's
    rate (FLOP/s for a GEMM, elements per second otherwise) with that op's call overhead, and
    keeps the footprint the rate was measured at (so the predictor's excess term counts what
    the full size brings from farther); the per-step terms as measured; the page faults by the
    mmap-threshold rule (the full step is not replayed). A kernel with no counterpart, or whose
    counterpart could not be replayed, stays unmeasured: the predictor names it."""
    import dataclasses

    from memprobe.train import op_rates as R

    pairs = aligned_ops(full, check)
    rates: dict[str, Any] = {}
    for op in full.kernels:
        key = R.op_key(op)
        if key in rates:
            continue
        twin = pairs.get(op.index)
        src = check_inputs.rates.get(R.op_key(twin)) if twin is not None else None
        if src is None:
            continue
        work = R.work_of(op)
        r = src.rate
        if src.call_s is None or r is None or work <= 0:
            call = src.call_s if (src.call_s is not None and work <= 0) else None
            why = src.why or ("" if call is not None else "no rate at the check's shape")
            rates[key] = dataclasses.replace(src, key=key, work=work, call_s=call, why=why)
            continue
        rates[key] = dataclasses.replace(src, key=key, work=work, call_s=work / r + src.overhead_s)
    return dataclasses.replace(check_inputs, rates=rates, fault_bytes=None)


def with_call_scale(inputs: Any, factor: float) -> Any:
    """`inputs` with every call cost (each op's overhead, autograd's start, the optimizer's
    calls) times `factor`; each op's rate kept (its call_s moves with its overhead)."""
    import dataclasses

    rates = {k: (r if r.call_s is None else dataclasses.replace(
        r, overhead_s=r.overhead_s * factor, call_s=r.call_s + r.overhead_s * (factor - 1)))
        for k, r in inputs.rates.items()}
    m = inputs.machine
    upd = None if m.update_call_s is None else tuple(x * factor for x in m.update_call_s)
    return dataclasses.replace(inputs, rates=rates, machine=dataclasses.replace(
        m, backward_call_s=m.backward_call_s * factor, update_call_s=upd))


def in_step_call_scale(tiny: C.StepGraph, tiny_inputs: Any, ceilings: Any, tiny_step_s: float) -> float:
    """How much more the calls cost in a step's own sequence than each op's call repeated alone:
    a real step of the same network at its least sizes (`tiny`: its ops, almost none of their
    work), timed (`tiny_step_s`), less its predicted work, over its predicted calls; at least 1.
    Autograd's nodes between the calls and code and objects gone cold again make them dearer:
    1.1-2 x on the 2-vCPU Xeon guest (the family sweep's points, one thread)."""
    from memprobe.train import predict as P

    pred = P.predict(tiny, ceilings, tiny_inputs)
    calls = pred.overhead_s
    if calls <= 0:
        return 1.0
    # never below 1: a call in the step's sequence costs at least what it costs alone (a tiny
    # step whose work was predicted high, ResNet-50's at 64 px, would otherwise zero them)
    return max(1.0, (tiny_step_s - (pred.predicted_s - calls)) / calls)
