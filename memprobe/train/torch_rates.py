"""Timers and per-step terms measured through PyTorch (beside stage 4: result -> **train** ->
report), for the predictor's inputs (`inputs.measure_step_inputs`, `op_rates`). Needs the
optional extra (`memprobe[torch]`).

A call timed warm in batches (`timed_without_faults`) or once after a cache flush
(`timed_cold`), each without the page faults its calls took; autograd's start (once per
backward call) from a chain of tiny ops; a fresh page's cost per byte; the optimizer's fixed
and per-tensor costs from its step on tiny tensors. Isolated calls only: never a training step.
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any, Callable

from memprobe.train import torch_families as TF

FLOAT_BYTES = 4  # float32

REPS = 5  # timed batches per figure (median)
COLD_REPS = 5  # single calls after a cache flush per cold figure (median)
# a call this long is timed LONG_CALL_REPS times, not REPS: the timer and the scheduler's noise
# are a small part of it, and a language head's gradient (half a second a call) took seconds
LONG_CALL_S, LONG_CALL_REPS = 0.05, 3
# untimed calls before a figure's first timed batch (see _warm): this long, and this many
# calls unless they take longer than WARM_MAX_S
WARM_S, WARM_CALLS, WARM_MAX_S = 0.03, 20, 0.5
BATCH_TARGET_S = 2e-3  # calls per timed batch: enough to reach this, so timer resolution is no issue
PAGE_BYTES = resource.getpagesize()  # what one minor fault maps (the heap has no huge pages)
# a kernel's rate keeps no meaning once the work is this small a part of the call (noise)
MIN_WORK_FRACTION = 0.1


def _warm(fn: Callable[[], Any]) -> None:
    """Call fn for WARM_S: the first calls after a pause run on sleeping pool threads (on a
    2-vCPU guest an optimizer step on 64 Ki elements took 10-100 ms for each of its first ten calls,
    36 us after), and a training step's calls come back to back."""
    TF.flush_denormals()  # as the steps run (torch_families.build)
    t0 = time.perf_counter()
    fn()
    calls = 1
    while (elapsed := time.perf_counter() - t0) < WARM_S or (calls < WARM_CALLS and elapsed < WARM_MAX_S):
        fn()
        calls += 1


def _timed(fn: Callable[[], Any], reps: int = REPS) -> float:
    """Median seconds per call, calls timed in batches (each batch waits for the device)."""
    _warm(fn)
    TF.synchronize()
    t0 = time.perf_counter()
    fn()
    TF.synchronize()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, min(500, int(BATCH_TARGET_S / one)))
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        TF.synchronize()
        out.append((time.perf_counter() - t0) / n)
    return statistics.median(out)


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _fault_free_s(elapsed_s: float, faults: int, calls: int, fault_s_per_byte: float) -> float:
    """Seconds per call of a timed batch of `calls` calls, its `faults` minor page faults taken
    out (each maps one page, at `fault_s_per_byte`)."""
    return max(0.0, elapsed_s - faults * fault_s_per_byte * PAGE_BYTES) / calls


def timed_without_faults(fn: Callable[[], Any], reps: int = REPS, fault_s_per_byte: float = 0.0) -> float:
    """Median seconds per call, as `_timed`, each batch without the page faults its calls took
    a replayed op's megabyte outputs go back to the system at every free (glibc trims the
    heap's top) and the next call faults them in again: the allocator's cost, not the op's (the
    step's own faults are the predictor's fault term)."""
    _warm(fn)
    TF.synchronize()
    t0 = time.perf_counter()
    fn()
    TF.synchronize()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, min(500, int(BATCH_TARGET_S / one)))
    out = []
    for _ in range(reps if one < LONG_CALL_S else min(reps, LONG_CALL_REPS)):
        f0, t0 = _faults(), time.perf_counter()
        for _ in range(n):
            fn()
        TF.synchronize()
        out.append(_fault_free_s(time.perf_counter() - t0, _faults() - f0, n, fault_s_per_byte))
    return statistics.median(out)


def timed_cold(fn: Callable[[], Any], flush: Any, reps: int = COLD_REPS, fault_s_per_byte: float = 0.0) -> float:
    """Median seconds of one call made right after `flush` (a tensor larger than the caches) is
    rewritten, so the call finds none of its operands in any cache: the op as a step runs it
    on tensors that other ops have pushed out to memory. Each call's page faults taken out, as
    `timed_without_faults`; the flush is outside the timed call. The caller has just warmed `fn`
    (its warm figure), so nothing is warmed here."""
    out = []
    for i in range(reps):
        flush.fill_(float(i))
        TF.synchronize()
        f0, t0 = _faults(), time.perf_counter()
        fn()
        TF.synchronize()
        out.append(_fault_free_s(time.perf_counter() - t0, _faults() - f0, 1, fault_s_per_byte))
    return statistics.median(out)


def _rate(flops: float, t_s: float, overhead_s: float) -> float | None:
    if flops <= 0:
        return None
    t_s = max(t_s, 1e-7)
    # the call's overhead is a term of its own: out of the rate, but never below a tenth of the
    # call (at that point the difference is noise, and the op is overhead either way)
    return flops / max(t_s - overhead_s, MIN_WORK_FRACTION * t_s)


def measure_backward_call_s(reps: int = REPS) -> float:
    """Autograd's cost per backward call apart from its nodes: the backward of a chain of one
    tiny op against a chain of nine (the intercept)."""
    import torch

    x = TF.to_device(torch.randn(2)).requires_grad_(True)

    def chain(n: int) -> Callable[[], None]:
        def run() -> None:
            y = x
            for _ in range(n):
                y = y * 0.5
            torch.autograd.grad(y.sum(), [x])
        return run

    def fwd(n: int) -> Callable[[], Any]:
        def run() -> Any:
            y = x
            for _ in range(n):
                y = y * 0.5
            return y.sum()
        return run

    b1 = _timed(chain(1), reps) - _timed(fwd(1), reps)
    b9 = _timed(chain(9), reps) - _timed(fwd(9), reps)
    return max(0.0, b1 - (b9 - b1) / 8)


FAULT_PROBE_BYTES = 64 << 20  # above glibc's largest mmap threshold: mapped fresh every time


def measure_fault_s_per_byte(reps: int = REPS) -> float:
    """Seconds per byte a fresh large tensor costs beyond writing it: a 64 MiB tensor allocated
    and filled (glibc maps it fresh and unmaps it when it is freed, so every call faults its
    pages in) against the same fill of a tensor kept alive. A step pays it for every tensor
    over glibc's mmap threshold that it allocates (predict.MMAP_THRESHOLD_BYTES)."""
    import torch

    n = FAULT_PROBE_BYTES // FLOAT_BYTES
    kept = torch.empty(n)

    def fresh() -> None:
        torch.empty(n).fill_(1.0)

    def reuse() -> None:
        kept.fill_(1.0)

    return max(0.0, _timed(fresh, reps) - _timed(reuse, reps)) / FAULT_PROBE_BYTES


def measure_update(optimizer: str, reps: int = REPS) -> tuple[float, float]:
    """(fixed s per step, s per parameter tensor) of an optimizer ("sgd" with momentum |
    "adamw"): its step on one and on nine tiny tensors (intercept and slope)."""
    import torch

    def opt_for(params: list[Any]) -> Any:
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        return torch.optim.AdamW(params, lr=1e-3)

    def step_s(n_tensors: int, elements: int) -> float:
        ps = [torch.nn.Parameter(TF.to_device(torch.randn(elements))) for _ in range(n_tensors)]
        for p in ps:
            p.grad = TF.to_device(torch.randn(elements))
        opt = opt_for(ps)
        opt.step()  # the states exist from here on, as in every step after a network's first
        return _timed(opt.step, reps)

    t1, t9 = step_s(1, 2), step_s(9, 2)
    per_tensor = max(0.0, (t9 - t1) / 8)
    return max(0.0, t1 - per_tensor), per_tensor
