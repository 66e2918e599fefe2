"""The CNN and transformer families' prediction inputs, measured through PyTorch (beside stage 4:
result -> **train** -> report). Needs the optional extra (`memprobe[torch]`).

Every op of a step (`family_model.LoneOp`) is run alone, forward and forward + backward
(`torch.autograd.grad`, so no gradient is accumulated into a leaf the network would not have),
on tensors of the point's shape whose batch is cut until the op's operands fit in cache, but
never so far that PyTorch picks another kernel for it (`rate_shape`): its rate (FLOP/s, the op's
call overhead taken out) is the compute ceiling of that shape. The call
overheads come from the same ops at a tiny shape; autograd's start (once per backward call)
from a chain of tiny ops; the optimizer's fixed and per-tensor costs from its step on tiny
tensors, its rate from one in-cache tensor. Isolated calls only: never a training step.
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable, Iterator

from memprobe.train import family_model as FM
from memprobe.train import torch_families as TF
from memprobe.train.families import FLOAT_BYTES, out_size

REPS = 5  # timed batches per figure (median)
COLD_REPS = 5  # single calls after a cache flush per cold figure (median)
# a call this long is timed LONG_CALL_REPS times, not REPS: the timer and the scheduler's noise
# are a small part of it, and a language head's gradient (half a second a call) took seconds
LONG_CALL_S, LONG_CALL_REPS = 0.05, 3
# untimed calls before a figure's first timed batch (see _warm): this long, and this many
# calls unless they take longer than WARM_MAX_S
WARM_S, WARM_CALLS, WARM_MAX_S = 0.03, 20, 0.5
BATCH_TARGET_S = 2e-3  # calls per timed batch: enough to reach this, so timer resolution is no issue
UPDATE_ELEMENTS = 1 << 16  # the optimizer's rate: one tensor this big (its states fit in L2)
# the lone op's forward operands fit in this fraction of the cache it is measured against, so
# its backward's extra tensors (the gradients) fit too
CACHE_FRACTION = 1 / FM.LONE_FOOTPRINT
# ops of this kind at a tiny shape: their call overhead
TINY = {"conv": (1, 2, 2, 4, 3, 1), "linear": (1, 2, 2, 1), "bmm": (1, 2, 2, 2), "batch_norm": (1, 2, 2),
        "layer_norm": (1, 2), "relu": (2,), "add": (2,), "mul": (2,), "gelu": (2,), "add_bcast": (1, 1, 2),
        "masked_fill": (1, 2), "softmax": (1, 2), "contiguous": (1, 1, 2, 2), "mean": (1, 2, 2),
        "embedding": (1, 4, 2, 1), "cross_entropy": (1, 2), "count": (), "maxpool": (1, 2, 4)}
# GEMM rows a weight-heavy op keeps when cut (see cache_batch): 128 rows make a weight byte
# carry 64 FLOPs, past this class of machine's FLOP-per-byte balance from memory
MIN_GEMM_ROWS = 128
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


def lone_forward(op: FM.LoneOp, seed: int = 0) -> tuple[Callable[[], Any], list[Any]]:
    """The op alone: a call that runs its forward and the tensors a backward differentiates by
    (activations that need a gradient and parameters). Shapes as the families' networks run it."""
    import torch
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(seed)
    k, d = op.kind, op.dims

    def t(*shape: int, grad: bool = True) -> Any:
        return TF.to_device(torch.randn(*shape, generator=g)).requires_grad_(grad)

    dev = TF.to_device

    if k == "conv":
        b, cin, cout, hw, ks, ig, *rest = d
        stride = rest[0] if rest else 1
        x, w = t(b, cin, hw, hw, grad=bool(ig)), t(cout, cin, ks, ks)
        return (lambda: F.conv2d(x, w, stride=stride, padding=ks // 2)), [x, w] if ig else [w]
    if k == "linear":
        rows, din, dout, ig, *rest = d
        x, w = t(rows, din, grad=bool(ig)), t(dout, din)
        if rest and not rest[0]:  # no bias (a tied head)
            return (lambda: F.linear(x, w)), ([x] if ig else []) + [w]
        bias = t(dout)
        return (lambda: F.linear(x, w, bias)), ([x] if ig else []) + [w, bias]
    if k == "maxpool":
        b, c, hw = d
        x = t(b, c, hw, hw)
        return (lambda: F.max_pool2d(x, 3, 2, 1)), [x]
    if k == "bmm":
        gr, m, kk, n = d
        a, b2 = t(gr, m, kk), t(gr, n, kk)  # the second operand as a transposed view, as k.transpose
        bt = b2.transpose(-2, -1) if m == n else t(gr, kk, n)
        leaves = [a, b2] if m == n else [a, bt]
        return (lambda: torch.matmul(a, bt)), leaves
    if k == "batch_norm":
        b, c, hw = d
        x, w, bias = t(b, c, hw, hw), t(c), t(c)
        rm, rv = dev(torch.zeros(c)), dev(torch.ones(c))
        return (lambda: F.batch_norm(x, rm, rv, w, bias, training=True, momentum=0.1)), [x, w, bias]
    if k == "layer_norm":
        rows, dd = d
        x, w, bias = t(rows, dd), t(dd), t(dd)
        return (lambda: F.layer_norm(x, (dd,), w, bias)), [x, w, bias]
    if k in ("relu", "gelu", "mul"):
        x = t(d[0])
        fn = {"relu": lambda: F.relu(x), "gelu": lambda: F.gelu(x, approximate="tanh"), "mul": lambda: x * 0.25}[k]
        return fn, [x]
    if k == "add":
        a, b2 = t(d[0]), t(d[0])
        return (lambda: a + b2), [a, b2]
    if k == "add_bcast":
        b, tt, dd = d
        a, p = t(b, tt, dd), t(tt, dd)
        return (lambda: a + p), [a, p]
    if k in ("masked_fill", "softmax"):
        gr, tt = d
        s = t(gr, tt, tt)
        mask = dev(~torch.ones(tt, tt, dtype=torch.bool).tril())
        return ((lambda: s.masked_fill(mask, float("-inf"))) if k == "masked_fill" else (lambda: s.softmax(-1))), [s]
    if k == "contiguous":
        if len(d) == 1:  # autograd's stack of the q, k, v gradients: a copy
            x = t(d[0])
            return (lambda: x.clone()), [x]
        b, h, tt, hd = d
        y = t(b, h, tt, hd)
        return (lambda: y.transpose(1, 2).contiguous()), [y]
    if k == "mean":
        b, c, hw = d
        x = t(b, c, hw, hw)
        return (lambda: x.mean((2, 3))), [x]
    if k == "embedding":
        rows, vocab, dd, _ = d
        idx = dev(torch.randint(0, vocab, (rows,), generator=g))
        w = t(vocab, dd)
        return (lambda: F.embedding(idx, w)), [w]
    if k == "cross_entropy":
        rows, classes = d
        x = t(rows, classes)
        y = dev(torch.randint(0, classes, (rows,), generator=g))
        return (lambda: F.cross_entropy(x, y)), [x]
    if k == "count":
        c = dev(torch.zeros((), dtype=torch.long))
        return (lambda: c.add_(1)), []
    raise ValueError(f"unknown lone op kind {k!r}")


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_lone(op: FM.LoneOp, reps: int = REPS, fault_s_per_byte: float = 0.0) -> tuple[float, float]:
    """(forward s, backward s) of the op alone: the forward with autograd recording, and the
    forward + backward minus it; each without the page faults its calls took (their count
    times `fault_s_per_byte`). Called alone, an op's output and scratch go back to the system
    at every free once they are megabytes (glibc trims the heap's top), and the next call
    faults them in again: a 1x1 convolution of 16x16x48x48 into 64 channels took 7.2 ms so,
    1.6 ms without (Xeon guest). That is the allocator's cost, not the op's; the step's own
    faults are the model's fault term (family_model.fresh_bytes)."""
    import torch

    fwd, leaves = lone_forward(op)
    if not leaves:
        return _timed(fwd, reps), 0.0
    out = fwd()
    grad_out = torch.ones_like(out) if out.dim() else None

    def fb() -> None:
        torch.autograd.grad(fwd(), leaves, grad_out)

    # the two timed in alternation, the backward as the difference within each repetition: a
    # neighbour's spell then slows both sides of one difference rather than one side of it
    _warm(fb)
    TF.synchronize()
    t0 = time.perf_counter()
    fb()
    TF.synchronize()
    n = max(1, min(500, int(BATCH_TARGET_S / max(time.perf_counter() - t0, 1e-7))))
    fs, bs = [], []
    for _ in range(reps):
        TF.synchronize()
        f0, t0 = _faults(), time.perf_counter()
        for _ in range(n):
            fwd()
        TF.synchronize()
        f1, t1 = _faults(), time.perf_counter()
        for _ in range(n):
            fb()
        TF.synchronize()
        f2, t2 = _faults(), time.perf_counter()
        tf = _fault_free_s(t1 - t0, f1 - f0, n, fault_s_per_byte)
        fs.append(tf)
        bs.append(_fault_free_s(t2 - t1, f2 - f1, n, fault_s_per_byte) - tf)
    return statistics.median(fs), max(0.0, statistics.median(bs))


def _fault_free_s(elapsed_s: float, faults: int, calls: int, fault_s_per_byte: float) -> float:
    """Seconds per call of a timed batch of `calls` calls, its `faults` minor page faults taken
    out (each maps one page, at `fault_s_per_byte`)."""
    return max(0.0, elapsed_s - faults * fault_s_per_byte * PAGE_BYTES) / calls


def timed_without_faults(fn: Callable[[], Any], reps: int = REPS, fault_s_per_byte: float = 0.0) -> float:
    """Median seconds per call, as `_timed`, each batch without the page faults its calls took
    (time_lone's rule): a replayed op's megabyte outputs go back to the system at every free."""
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


def cache_batch(op: FM.LoneOp, budget_bytes: float) -> FM.LoneOp:
    """The op with its leading dimension cut so that its forward operands fit `budget_bytes`.

    A convolution or linear layer whose weights alone overflow the budget cannot be made to fit:
    its cut stops at MIN_GEMM_ROWS output rows, where each weight byte still carries enough
    FLOPs that the figure is the GEMM's rate, not the weight stream's (the model's memory term
    counts that stream apart)."""
    if not op.dims or op.kind == "count":
        return op
    full = FM.forward_bytes(op)
    if full <= budget_bytes:
        return op
    b = max(1, int(op.batch * budget_bytes / full))
    rows_per = _rows_per_batch(op)
    if rows_per and _weight_bytes(op) > budget_bytes:
        b = max(b, min(op.batch, -(-MIN_GEMM_ROWS // rows_per)))
    return op.with_batch(b)


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    # PyTorch's profiler writes a line to the process's stderr at each start and stop
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def dispatch_kernels(op: FM.LoneOp) -> frozenset[str]:
    """The ATen operators PyTorch runs for the op's forward (the profiler's names). PyTorch
    picks a call's algorithm by its shape and threads: a 1x1 convolution on one thread runs the
    native GEMM path below batch 16 and oneDNN from 16 on, 3-4x slower per FLOP on the Xeon
    guest (aten/src/ATen/native/Convolution.cpp, use_mkldnn)."""
    import torch

    fwd, _ = lone_forward(op)
    fwd()
    with _quiet_fd2(), torch.autograd.profiler.profile(use_kineto=False) as prof:
        fwd()
    return frozenset(e.name for e in prof.function_events)


def rate_shape(op: FM.LoneOp, budget_bytes: float) -> FM.LoneOp:
    """The shape the op's rate is measured at: cut to fit `budget_bytes` (cache_batch), then
    grown again (doubling its batch) until PyTorch runs the same kernels for it as for the
    op's own shape; a rate from another algorithm is not the op's (the cut 1x1 convolutions
    of a batch-16 CNN predicted its step 20 % fast)."""
    cut = cache_batch(op, budget_bytes)
    if cut.batch == op.batch or TF.device() != "cpu":  # (a GPU's kernels: cuDNN's own choice)
        return cut
    want = dispatch_kernels(op)
    while cut.batch < op.batch and dispatch_kernels(cut) != want:
        cut = op.with_batch(min(op.batch, 2 * cut.batch))
    return cut


def _rows_per_batch(op: FM.LoneOp) -> int:
    """Output rows of the op's GEMM per unit of its leading dimension (0: not a weighted GEMM)."""
    if op.kind == "conv":
        _, _, _, hw, _, _, *rest = op.dims
        return out_size(hw, rest[0] if rest else 1) ** 2
    return 1 if op.kind == "linear" else 0


def _weight_bytes(op: FM.LoneOp) -> float:
    if op.kind == "conv":
        _, cin, cout, _, ks, *_ = op.dims
        return cin * cout * ks * ks * FLOAT_BYTES
    if op.kind == "linear":
        return op.dims[1] * op.dims[2] * FLOAT_BYTES
    return 0.0


def lone_flops(op: FM.LoneOp, phase: str) -> float:
    """FLOPs of the op alone, by the families' formulas (the backward with the same multipliers
    as `family_model`)."""
    from memprobe.train.families import GELU_FLOPS, LOSS_FLOPS, NORM_FLOPS, POOL_FLOPS, SOFTMAX_FLOPS

    k, d = op.kind, op.dims
    if k == "conv":
        b, cin, cout, hw, ks, ig, *rest = d
        ho = out_size(hw, rest[0] if rest else 1)
        f = 2.0 * b * cout * ho * ho * cin * ks * ks
        return f if phase == "fwd" else f * (2 if ig else 1)
    if k == "linear":
        rows, din, dout, ig, *rest = d
        f = 2.0 * rows * din * dout + (rows * dout if not rest or rest[0] else 0)
        return f if phase == "fwd" else f * (2 if ig else 1)
    if k == "maxpool":
        return float(POOL_FLOPS * d[0] * d[1] * out_size(d[2], 2) ** 2)
    if k == "bmm":
        gr, m, kk, n = d
        return 2.0 * gr * m * kk * n * (1 if phase == "fwd" else 2)
    if k == "batch_norm":
        return float(NORM_FLOPS * d[0] * d[1] * d[2] * d[2])
    if k == "layer_norm":
        return float(NORM_FLOPS * d[0] * d[1])
    if k in ("relu", "mul", "add"):
        return float(d[0]) if not (k == "add" and phase == "bwd") else 0.0
    if k == "gelu":
        return float(GELU_FLOPS * d[0])
    if k == "add_bcast":
        return float(d[0] * d[1] * d[2])
    if k == "masked_fill":
        return float(d[0] * d[1] * d[1])
    if k == "softmax":
        return float(SOFTMAX_FLOPS * d[0] * d[1] * d[1])
    if k == "mean":
        return float(d[0] * d[1] * d[2] * d[2])
    if k == "cross_entropy":
        return float(LOSS_FLOPS * d[0] * d[1])
    if k == "count":
        return 1.0 if phase == "fwd" else 0.0
    return 0.0  # embedding, contiguous: data movement only


def _rate(flops: float, t_s: float, overhead_s: float) -> float | None:
    if flops <= 0:
        return None
    t_s = max(t_s, 1e-7)
    # the call's overhead is a term of its own: out of the rate, but never below a tenth of the
    # call (at that point the difference is noise, and the op is overhead either way)
    return flops / max(t_s - overhead_s, MIN_WORK_FRACTION * t_s)


def measure_overheads(kinds: set[str], reps: int = REPS) -> dict[str, float]:
    """Seconds per call of each op kind at a tiny shape: "fwd|<kind>" and "bwd|<kind>" (the
    backward without autograd's start, which `measure_backward_call_s` gives once per step)."""
    start = measure_backward_call_s(reps)
    out: dict[str, float] = {}
    for k in sorted(kinds):
        f, b = time_lone(FM.LoneOp(k, TINY[k]), reps)
        out[f"fwd|{k}"] = f
        out[f"bwd|{k}"] = max(0.0, b - start) if k != "count" else 0.0
    return out


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
    over glibc's mmap threshold that it allocates (family_model.MMAP_THRESHOLD_BYTES)."""
    import torch

    n = FAULT_PROBE_BYTES // FLOAT_BYTES
    kept = torch.empty(n)

    def fresh() -> None:
        torch.empty(n).fill_(1.0)

    def reuse() -> None:
        kept.fill_(1.0)

    return max(0.0, _timed(fresh, reps) - _timed(reuse, reps)) / FAULT_PROBE_BYTES


def measure_update(optimizer: str, reps: int = REPS) -> tuple[float, float, float]:
    """(fixed s per step, s per parameter tensor, FLOP/s) of the family's optimizer: its step on
    one and on nine tiny tensors (intercept and slope), and on one in-cache tensor."""
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
    fixed = max(0.0, t1 - per_tensor)
    big = step_s(1, UPDATE_ELEMENTS)
    rate = _rate(FM.UPDATE_FLOPS[optimizer] * UPDATE_ELEMENTS, big - fixed, per_tensor)
    return fixed, per_tensor, rate or 0.0


def measure_rates(ops: list[FM.LoneOp], budget_bytes: float, cache: dict[Any, Any] | None = None,
                  overhead_s: dict[str, float] | None = None, reps: int = REPS, fault_s_per_byte: float = 0.0
                  ) -> tuple[dict[str, dict[tuple[int, int], float]], list[dict[str, Any]]]:
    """Rates of `ops` (forward and backward) at their shapes cut to fit `budget_bytes`:
    {"<phase>|<key>": {(batch measured, 0): FLOP/s}} and the raw timings. `cache` keeps
    timings of shapes measured before (the same thread count), keyed by the shape measured, and
    the shape chosen for each op (keyed ("shape", op key, budget))."""
    cache = {} if cache is None else cache
    overhead_s = overhead_s or {}
    rates: dict[str, dict[tuple[int, int], float]] = {}
    raw: list[dict[str, Any]] = []
    for op in ops:
        shape_key = ("shape", op.key, budget_bytes)
        if shape_key not in cache:
            cache[shape_key] = rate_shape(op, budget_bytes)
        cut = cache[shape_key]
        if cut.key not in cache:
            cache[cut.key] = time_lone(cut, reps, fault_s_per_byte)
        t_f, t_b = cache[cut.key]
        for phase, t_s in (("fwd", t_f), ("bwd", t_b)):
            fl = lone_flops(cut, phase)
            r = _rate(fl, t_s, overhead_s.get(f"{phase}|{op.kind}", 0.0))
            raw.append({"class": f"{phase}|{op.key}", "measured": cut.key, "call_s": t_s,
                        "gflops": None if r is None else r / 1e9})
            if r is not None:
                rates[f"{phase}|{op.key}"] = {(cut.batch, 0): r}
    return rates, raw
