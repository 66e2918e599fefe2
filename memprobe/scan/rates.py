"""The rate table (stages 1-4 of the flow for the framework's per-op rates): every op class a
captured training step runs, measured alone through the framework on this device, kept on the
DeviceResult as a `RateTable` so that a step can be predicted for this machine from its scan
alone (`train/rates_from_scan.py`, `memprobe predict SPEC --on scan.json`).

What is measured, at one thread and at all threads (each thread count under
`train.spec.torch_threads`, as `memprobe predict` runs its replays):

* GEMM, batched-matmul, convolution and (CPU) fused-attention ladders (a few shapes each,
  float32): GFLOP/s with the call's overhead taken out; FLOPs as `torch.utils.flop_counter`
  counts them (what `capture` uses).
* Per element-wise class (CLASS_KERNELS: one representative kernel per class, the table's one
  entry per class), and each transcendental operator of TRANSCENDENTAL_OPERATORS on its own, at
  each level: its operands sized to the level's bandwidth working set (the
  bandwidth stage's `BandwidthSetup`, one thread or all), elements/s and GB/s. Memory's working
  set is capped (RatePlan.memory_max_bytes; at least 2x the largest cache, measured or declared).
  Could the scan's STREAM bandwidth stand in for a level's rate? Measured in one quick scan of
  the 2-vCPU Xeon guest (a busy one: other processes took 1.5 CPUs throughout, so these are
  rough), one thread: c = a + b ran at 193 GB/s in L1 against triad's 613 (0.31), 186 in L2
  against 219 (0.85), 18.0 at memory against 13.9 (1.3); softmax at memory 8.5 GB/s against
  read's 17.7 (0.48), layer norm 33 GB/s in L1. The bandwidth predicts neither the in-cache
  rates (the call and the kernel's own work bound them) nor the row-wise classes at memory, so
  every level is measured; the predictor's memory term still reads the levels' bandwidth.
* Call overheads per class (each class's kernel on one-element tensors), autograd's start per
  backward call, each optimizer's calls (its single-tensor step on one and on nine tiny tensors:
  intercept and slope), a fresh page's cost per byte, and on all threads the cross-core term
  (`train.sweep.measure_cross_core_s_per_byte`).

Without PyTorch only the GEMM ladders run, through NumPy's BLAS (the library named); the
element-wise classes, convolutions and call terms are then absent, and `absent` says so. On a
GPU the same table comes through PyTorch on CUDA (`stage_gpu_rates`, the GPU scan's last stage,
guarded by `torch.cuda.is_available()`; written to the CPU path's shape, never yet run on a GPU).

Every figure is the median of its timed batches (a prediction input); a batch's page faults are
taken out at the measured cost per byte, as the replays of `memprobe predict` do.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from memprobe.result import (OVERHEAD_CLASSES, RATE_CLASSES, AttentionRate, ClassRate, ConvRate, GemmRate, Level,
                             RateTable, ThreadRates)
from memprobe.profile import RatePlan
from memprobe.scan import ScanContext, Stage

PAGE_BYTES = resource.getpagesize()
WARM_CALLS, WARM_S, WARM_MAX_S = 1, 5e-3, 0.1  # untimed calls before a figure
MEMORY_RATE_MIN_BYTES = 64 << 20  # memory's working set for the element-wise classes: at least this,
MEMORY_CACHE_MULTIPLE = 2  # this many times the largest cache, measured or declared,
FAULT_PROBE_BYTES = 40 << 20  # above glibc's largest mmap threshold (32 MiB): mapped fresh every call


# ---- the timer ----------------------------------------------------------------------------------
def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_call(fn: Callable[[], Any], reps: int, batch_s: float, sync: Callable[[], None] | None = None,
              fault_s_per_byte: float = 0.0) -> float:
    """Median seconds per call of `fn`, timed in `reps` batches of calls (each batch at least
    `batch_s`, waiting for the device at its end), each batch's page faults taken out at
    `fault_s_per_byte`. A lighter warm-up than torch_rates' (the table's calls come back to
    back, so the pool's threads are awake)."""
    sync = sync or (lambda: None)
    t0 = time.perf_counter()
    fn()
    calls = 1
    while calls < WARM_CALLS or (time.perf_counter() - t0 < WARM_S):
        fn()
        calls += 1
        if time.perf_counter() - t0 > WARM_MAX_S:
            break
    sync()
    one = max((time.perf_counter() - t0) / calls, 1e-7)
    n = max(1, min(1000, int(batch_s / one)))
    out = []
    for _ in range(max(1, reps)):
        f0, t1 = _faults(), time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        el = time.perf_counter() - t1
        out.append(max(0.0, el - (_faults() - f0) * fault_s_per_byte * PAGE_BYTES) / n)
    return statistics.median(out)


def work_rate(work: float, call_s: float, overhead_s: float) -> float | None:
    """Work per second with the call's overhead out (never below a tenth of the call: torch_rates'
    rule, where the difference is noise)."""
    if work <= 0 or not call_s or call_s <= 0:
        return None
    return work / max(call_s - overhead_s, 0.1 * call_s)


# ---- element-wise classes: one kernel each --------------------------------------------------------
@dataclass(frozen=True)
class ClassKernel:
    """One element-wise class's representative kernel: `build(working_set_bytes, pool)` returns
    (the call, the elements its work counts, as `capture` counts that class)."""

    klass: str
    what: str
    bytes_per_element: float  # STREAM counting, float32
    build: Callable[[int, Pool], tuple[Callable[[], Any], int]]
    tiny: Callable[[Pool], Callable[[], Any]]  # the same kernel on one-element tensors


ROW = 1024  # row length of the row-wise classes (reductions, norms, softmaxes, gathers)


def _rows(n_bytes: int, per_elem: int) -> tuple[int, int]:
    n = max(1, n_bytes // per_elem)
    d = min(ROW, n)
    return max(1, n // d), d


def _t(*shape: int, device: str = "cpu") -> Any:
    """A float32 tensor of 0.75s (filled, so its pages exist; no denormal along any kernel)."""
    import torch

    return torch.empty(*shape, device=device).fill_(0.75)


class Pool:
    """Tensors carved from one buffer of 0.75s, filled once: a class's operands at memory's
    working set cost no fresh pages per class (building them, not timing them, was most of the
    stage's time). `take` hands out consecutive pieces; `reset` starts again at the front."""

    def __init__(self, n_bytes: int, device: str = "cpu") -> None:
        import torch

        # the working set, plus the small outputs (a row-wise class's) and the gaps between pieces
        self.base = torch.empty(max(1024, n_bytes // 4 + n_bytes // 512 + 4096), device=device).fill_(0.75)
        self.device = device
        self.at = 0

    def reset(self) -> "Pool":
        self.at = 0
        return self

    def take(self, *shape: int) -> Any:
        n = math.prod(shape)
        if self.at + n > self.base.numel():
            raise ValueError(f"rate pool too small for {shape}")
        t = self.base[self.at:self.at + n].view(*shape)
        self.at += n + 16  # 64 bytes apart
        return t


def _b_elementwise(n_bytes: int, pool: Pool) -> tuple[Callable[[], Any], int]:
    import torch

    n = max(1, n_bytes // 12)
    a, b, c = pool.take(n), pool.take(n), pool.take(n)
    return (lambda: torch.add(a, b, out=c)), n


def _b_copy(n_bytes: int, pool: Pool) -> tuple[Callable[[], Any], int]:
    n = max(1, n_bytes // 8)
    a, c = pool.take(n), pool.take(n)
    return (lambda: c.copy_(a)), n


def _b_update(n_bytes: int, pool: Pool) -> tuple[Callable[[], Any], int]:
    n = max(1, n_bytes // 12)
    p, a, b = pool.take(n), pool.take(n), pool.take(n)
    return (lambda: p.addcmul_(a, b, value=-1e-9)), n


def _b_reduction(n_bytes: int, pool: Pool) -> tuple[Callable[[], Any], int]:
    import torch

    r, d = _rows(n_bytes, 4)
    x, o = pool.take(r, d), pool.take(r)
    return (lambda: torch.sum(x, -1, out=o)), r * d


def _b_norm(n_bytes: int, pool: Pool) -> tuple[Callable[[], Any], int]:
    import torch

    r, d = _rows(n_bytes, 8)
    x, w, b, o, mean, rstd = pool.take(r, d), pool.take(d), pool.take(d), pool.take(r, d), pool.take(r, 1), \
        pool.take(r, 1)
    norm = torch.ops.aten.native_layer_norm.out
    return (lambda: norm(x, [d], w, b, 1e-5, out0=o, out1=mean, out2=rstd)), r * d


def _b_softmax(n_bytes: int, pool: Pool) -> tuple[Callable[[], Any], int]:
    import torch

    r, d = _rows(n_bytes, 8)
    x, o = pool.take(r, d), pool.take(r, d)
    soft = torch.ops.aten._softmax.out
    return (lambda: soft(x, -1, False, out=o)), r * d


def _b_gather(n_bytes: int, pool: Pool) -> tuple[Callable[[], Any], int]:
    import torch

    r, d = _rows(n_bytes // 2, 4)  # half the set the table, half the rows gathered
    w, o = pool.take(r, d), pool.take(r, d)
    idx = torch.randperm(r, generator=torch.Generator().manual_seed(0)).to(pool.device)
    return (lambda: torch.index_select(w, 0, idx, out=o)), r * d


def _b_operator(name: str) -> Callable[[int, Pool], tuple[Callable[[], Any], int]]:
    """Builder of a one-operand transcendental kernel (c = op(a)) over 8 bytes an element."""
    def build(n_bytes: int, pool: Pool) -> tuple[Callable[[], Any], int]:
        import torch

        n = max(1, n_bytes // 8)
        a, c = pool.take(n), pool.take(n)
        fn = getattr(torch.ops.aten, name).out
        return (lambda: fn(a, out=c)), n
    return build


def _b_random(n_bytes: int, pool: Pool) -> tuple[Callable[[], Any], int]:
    n = max(1, n_bytes // 4)
    a = pool.take(n)
    return (lambda: a.bernoulli_(0.9)), n


def _tiny(build: Callable[[int, Pool], tuple[Callable[[], Any], int]]) -> Callable[[Pool], Callable[[], Any]]:
    """The class's kernel on one-element tensors (its call overhead)."""
    return lambda pool: build(16, pool)[0]


CLASS_KERNELS: tuple[ClassKernel, ...] = (
    ClassKernel("elementwise", "c = a + b", 12, _b_elementwise, _tiny(_b_elementwise)),
    ClassKernel("reduction", "row sums, rows of 1024", 4, _b_reduction, _tiny(_b_reduction)),
    ClassKernel("norm", "layer norm, rows of 1024", 8, _b_norm, _tiny(_b_norm)),
    ClassKernel("softmax", "softmax, rows of 1024", 8, _b_softmax, _tiny(_b_softmax)),
    ClassKernel("gather", "index_select of rows of 1024", 8, _b_gather, _tiny(_b_gather)),
    ClassKernel("copy", "c.copy_(a)", 8, _b_copy, _tiny(_b_copy)),
    ClassKernel("update", "p.addcmul_(a, b) in place", 16, _b_update, _tiny(_b_update)),
    ClassKernel("transcendental", "c = gelu(a) (erf)", 8, _b_operator("gelu"), _tiny(_b_operator("gelu"))),
    ClassKernel("random", "a.bernoulli_(0.9) in place (a dropout mask)", 4, _b_random, _tiny(_b_random)),
)
assert tuple(k.klass for k in CLASS_KERNELS) == RATE_CLASSES

# transcendental operators measured one by one beside their class (ThreadRates.operators): the
# class's GELU stands for none of them (a tanh runs several times slower per element, a SiLU
# about as fast); a captured op of these names reads its own row
TRANSCENDENTAL_OPERATORS = ("tanh", "sigmoid", "exp", "log", "erf", "silu")



# ---- sizes ----------------------------------------------------------------------------------------
def level_working_sets(device: Any, threads_key: str, memory_max_bytes: int = RatePlan.memory_max_bytes
                       ) -> list[tuple[str, int]]:
    """(level, working set bytes) per level for the element-wise classes: the bandwidth stage's
    working set at this thread count where it ran, else the level's geometric middle; memory's
    capped (MEMORY_RATE_*)."""
    levels: list[Level] = list(device.levels)
    caches = [lv.size_bytes for lv in levels if lv.size_bytes]
    declared = [c.size_bytes for c in device.declared.caches if c.size_bytes] if device.declared else []
    largest = max(caches + declared + [0])
    mem = min(memory_max_bytes, max(MEMORY_RATE_MIN_BYTES, MEMORY_CACHE_MULTIPLE * largest))
    out = []
    prev = None
    for lv in levels:
        setup = device.bandwidth.setup(lv.name) if device.bandwidth is not None else None
        if lv.size_bytes is None:
            size = mem
        elif setup is not None:
            size = setup.size_bytes_threads_1 if threads_key == "threads_1" else setup.size_bytes_threads_all
        else:
            size = int(lv.size_bytes / 2 if prev is None else math.sqrt(prev * lv.size_bytes))
        if lv.size_bytes:
            prev = lv.size_bytes
        out.append((lv.name, max(4096, int(size))))
    return out


# ---- measuring ------------------------------------------------------------------------------------
def _gemm_ladder(plan: RatePlan, dev: str, sync: Callable[[], None], over: float) -> list[GemmRate]:
    import torch

    out = []
    for m, n, k in plan.gemm:
        a, b, c = _t(m, k, device=dev), _t(k, n, device=dev), _t(m, n, device=dev)
        fn = (lambda a=a, b=b, c=c: torch.mm(a, b, out=c))
        s = time_call(fn, plan.reps, plan.batch_s, sync)
        r = work_rate(2.0 * m * n * k, s, over)
        out.append(GemmRate(m, n, k, "float32", r / 1e9 if r else None, s))
    return out


def _bmm_ladder(plan: RatePlan, dev: str, sync: Callable[[], None], over: float) -> list[GemmRate]:
    import torch

    out = []
    for g, m, n, k in plan.bmm:
        a, b, c = _t(g, m, k, device=dev), _t(g, k, n, device=dev), _t(g, m, n, device=dev)
        fn = (lambda a=a, b=b, c=c: torch.bmm(a, b, out=c))
        s = time_call(fn, plan.reps, plan.batch_s, sync)
        r = work_rate(2.0 * g * m * n * k, s, over)
        out.append(GemmRate(m, n, k, "float32", r / 1e9 if r else None, s, batch=g))
    return out


def _conv_ladder(plan: RatePlan, dev: str, sync: Callable[[], None], over: float,
                 fault_s_per_byte: float) -> list[ConvRate]:
    import torch

    conv, conv_bwd = torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default
    out = []
    for b, cin, cout, hw, ks, st in plan.conv:
        x, w = _t(b, cin, hw, hw, device=dev), _t(cout, cin, ks, ks, device=dev)
        pad = ks // 2
        y = conv(x, w, None, [st, st], [pad, pad], [1, 1], False, [0, 0], 1)
        go = torch.ones_like(y)
        m, n, k = b * y.shape[2] * y.shape[3], cout, cin * ks * ks
        calls = {"forward": lambda: conv(x, w, None, [st, st], [pad, pad], [1, 1], False, [0, 0], 1),
                 "backward": lambda: conv_bwd(go, x, w, None, [st, st], [pad, pad], [1, 1], False, [0, 0], 1,
                                              [True, True, False])}
        for direction, fn in calls.items():
            # flop_counter's formulas: the backward's input and weight gradients, each the forward's
            flops = 2.0 * m * n * k * (2 if direction == "backward" else 1)
            s = time_call(fn, plan.reps, plan.batch_s, sync, fault_s_per_byte)
            r = work_rate(flops, s, over)
            out.append(ConvRate(b, cin, cout, hw, ks, st, direction, "float32", m, n, k, r / 1e9 if r else None, s))
    return out


def _attention_ladder(plan: RatePlan, dev: str, sync: Callable[[], None], over: float) -> list[AttentionRate]:
    """PyTorch's fused CPU attention (the kernel `capture` records for scaled_dot_product_attention
    on the CPU), causal and not, forward and backward, at each shape of the plan."""
    import torch
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
    bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default
    out = []
    for b, t, hd in plan.attention:
        q, k, v = (_t(b, 1, t, hd, device=dev) for _ in range(3))
        shape = (b, 1, t, hd)
        for causal in (True, False):
            o, lse = fwd(q, k, v, 0.0, causal)
            go = torch.ones_like(o)
            calls = {"forward": (lambda c=causal: fwd(q, k, v, 0.0, c), float(sdpa_flop_count(shape, shape, shape))),
                     "backward": (lambda c=causal, o=o, lse=lse: bwd(go, q, k, v, o, lse, 0.0, c),
                                  float(sdpa_backward_flop_count(shape, shape, shape, shape)))}
            for direction, (fn, flops) in calls.items():
                s = time_call(fn, plan.reps, plan.batch_s, sync)
                r = work_rate(flops, s, over)
                out.append(AttentionRate(b, t, hd, causal, direction, "float32", r / 1e9 if r else None, s))
    return out


def _overheads(plan: RatePlan, dev: str, sync: Callable[[], None], pool: Pool) -> dict[str, float | None]:
    import torch

    one = {"gemm": (lambda a=_t(1, 1, device=dev), c=_t(1, 1, device=dev): torch.mm(a, a, out=c)),
           "bmm": (lambda a=_t(1, 1, 1, device=dev), c=_t(1, 1, 1, device=dev): torch.bmm(a, a, out=c)),
           "call": (lambda: torch.empty(1, device=dev))}
    x, w = _t(1, 1, 2, 2, device=dev), _t(1, 1, 1, 1, device=dev)
    one["conv"] = lambda: torch.ops.aten.convolution.default(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
    q = _t(1, 1, 1, 1, device=dev)
    one["attention"] = lambda: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default(q, q, q, 0.0, False)
    out: dict[str, float | None] = {}
    for klass in OVERHEAD_CLASSES:
        kern = next((k for k in CLASS_KERNELS if k.klass == klass), None)
        try:
            fn = kern.tiny(pool.reset()) if kern is not None else one[klass]
            out[klass] = time_call(fn, plan.reps, plan.batch_s, sync)
        except Exception:  # noqa: BLE001 - that class's kernel fails again below and is named there
            out[klass] = None
    return out


def _level_rows(build: Callable[[int, Pool], tuple[Callable[[], Any], int]], bytes_per_element: float,
                overhead_s: float, plan: RatePlan, pool: Pool, sync: Callable[[], None],
                sets: list[tuple[str, int]], fault_s_per_byte: float) -> list[ClassRate]:
    """One kernel at each level's working set: elements/s and GB/s, its call overhead out."""
    rows = []
    for level, size in sets:
        fn, elements = build(size, pool.reset())
        s = time_call(fn, plan.reps, plan.batch_s, sync, fault_s_per_byte)
        r = work_rate(float(elements), s, overhead_s)
        rows.append(ClassRate(level, size, r, r * bytes_per_element / 1e9 if r else None, bytes_per_element, s))
        del fn
    return rows


def _class_rates(plan: RatePlan, pool: Pool, sync: Callable[[], None], sets: list[tuple[str, int]],
                 over: dict[str, float | None], fault_s_per_byte: float,
                 errors: list[str] | None = None) -> dict[str, list[ClassRate]]:
    """Each class at each level; a class whose kernel fails (an operator this PyTorch lacks) is
    left out and named in `errors`, the others still measured."""
    out: dict[str, list[ClassRate]] = {}
    for kern in CLASS_KERNELS:
        try:
            out[kern.klass] = _level_rows(kern.build, kern.bytes_per_element, over.get(kern.klass) or 0.0, plan,
                                          pool, sync, sets, fault_s_per_byte)
        except Exception as exc:  # noqa: BLE001 - one class's failure must not lose the table
            if errors is not None:
                errors.append(f"{kern.klass}: its kernel ({kern.what}) failed: {_why(exc)}")
    return out


def _operator_rates(plan: RatePlan, pool: Pool, sync: Callable[[], None], sets: list[tuple[str, int]],
                    over: dict[str, float | None], fault_s_per_byte: float,
                    errors: list[str] | None = None) -> dict[str, list[ClassRate]]:
    """Each of TRANSCENDENTAL_OPERATORS at each level, as its class is measured (the class's
    call overhead taken out); one that fails is named in `errors` and its ops read the class."""
    out: dict[str, list[ClassRate]] = {}
    for name in TRANSCENDENTAL_OPERATORS:
        try:
            out[name] = _level_rows(_b_operator(name), 8, over.get("transcendental") or 0.0, plan, pool, sync,
                                    sets, fault_s_per_byte)
        except Exception as exc:  # noqa: BLE001 - one operator's failure must not lose the table
            if errors is not None:
                errors.append(f"transcendental {name}: its kernel failed ({_why(exc)}); its ops read the class")
    return out


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160] if text else ''}"


def _part(name: str, fn: Callable[[], Any], default: Any, errors: list[str]) -> Any:
    """One part of the table; a failure leaves it out, named in `errors`."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one part's failure must not lose the table
        errors.append(f"{name}: failed: {_why(exc)}")
        return default


def _backward_call_s(plan: RatePlan, dev: str, sync: Callable[[], None]) -> float:
    """Autograd's start per backward call: torch_rates.measure_backward_call_s' intercept (a chain
    of one tiny op against nine), on this module's timer."""
    import torch

    x = _t(2, device=dev).requires_grad_(True)

    def chain(n: int, back: bool) -> Callable[[], Any]:
        def run() -> Any:
            y = x
            for _ in range(n):
                y = y * 0.5
            s = y.sum()
            return torch.autograd.grad(s, [x]) if back else s
        return run

    b1 = time_call(chain(1, True), plan.reps, plan.batch_s, sync) - time_call(chain(1, False), plan.reps,
                                                                               plan.batch_s, sync)
    b9 = time_call(chain(9, True), plan.reps, plan.batch_s, sync) - time_call(chain(9, False), plan.reps,
                                                                               plan.batch_s, sync)
    return max(0.0, b1 - (b9 - b1) / 8)


def _update_call_s(plan: RatePlan, dev: str, sync: Callable[[], None]) -> dict[str, list[float]]:
    """Each optimizer's calls as a captured step runs them (capture.make_optimizer: single-tensor
    path): its step on one and on nine tiny tensors, [fixed s, s per parameter tensor]."""
    import torch

    from memprobe.train.capture import make_optimizer

    out = {}
    for name in plan.optimizers:
        def step_s(n: int) -> float:
            ps = [torch.nn.Parameter(_t(2, device=dev)) for _ in range(n)]
            for p in ps:
                p.grad = _t(2, device=dev)
            opt = make_optimizer(name, ps)
            opt.step()
            return time_call(opt.step, plan.reps, plan.batch_s, sync)
        t1, t9 = step_s(1), step_s(9)
        per = max(0.0, (t9 - t1) / 8)
        out[name] = [max(0.0, t1 - per), per]
    return out


def _fault_s_per_byte(plan: RatePlan) -> float:
    """torch_rates.measure_fault_s_per_byte's figure on this module's timer: a fresh 40 MiB tensor
    filled against the same fill of one kept."""
    import torch

    n = FAULT_PROBE_BYTES // 4
    kept = torch.empty(n)
    fresh = time_call(lambda: torch.empty(n).fill_(1.0), plan.reps, plan.batch_s)
    reuse = time_call(lambda: kept.fill_(1.0), plan.reps, plan.batch_s)
    return max(0.0, fresh - reuse) / FAULT_PROBE_BYTES


def torch_library() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return f"torch {torch.__version__}"


def measure_torch_threads(plan: RatePlan, device: Any, threads_key: str, n: int, dev: str = "cpu",
                          progress: Callable[[str], None] | None = None, pool: Pool | None = None,
                          errors: list[str] | None = None) -> ThreadRates:
    """The whole table at one thread count through PyTorch (`dev`: "cpu" or "cuda"); `pool`: the
    element-wise classes' buffer, shared between thread counts (made here if None). A part that
    fails is left out and named in `errors` (the table's `absent`)."""
    import torch

    from memprobe.train import torch_families as TF

    TF.flush_denormals()
    sync = torch.cuda.synchronize if dev != "cpu" else (lambda: None)
    say = progress or (lambda msg: None)
    fault = _fault_s_per_byte(plan) if dev == "cpu" else 0.0
    sets = level_working_sets(device, threads_key, plan.memory_max_bytes)
    if pool is None or pool.base.numel() * 4 < max(s for _, s in sets):
        pool = Pool(max(s for _, s in sets), dev)
    errors = errors if errors is not None else []
    say("call overheads")
    over = _overheads(plan, dev, sync, pool)
    tr = ThreadRates(threads=n, call_overhead_s=over, fault_s_per_byte=fault if dev == "cpu" else None)
    say("GEMM ladder")
    tr.gemm = _part("gemm", lambda: _gemm_ladder(plan, dev, sync, over["gemm"] or 0.0), [], errors)
    tr.bmm = _part("bmm", lambda: _bmm_ladder(plan, dev, sync, over["bmm"] or 0.0), [], errors)
    say("convolutions")
    tr.conv = _part("conv", lambda: _conv_ladder(plan, dev, sync, over["conv"] or 0.0, fault), [], errors)
    if dev == "cpu":  # the fused CPU kernel; a GPU's attention kernels are not in the table yet
        tr.attention = _part("attention", lambda: _attention_ladder(plan, dev, sync, over["attention"] or 0.0), [],
                             errors)
    else:
        errors.append("attention: the GPU path measures no attention kernel yet")
    say("element-wise classes")
    tr.classes = _class_rates(plan, pool, sync, sets, over, fault, errors)
    tr.operators = _operator_rates(plan, pool, sync, sets, over, fault, errors)
    tr.backward_call_s = _part("autograd's start", lambda: _backward_call_s(plan, dev, sync), None, errors)
    tr.update_call_s = _part("optimizer calls", lambda: _update_call_s(plan, dev, sync), {}, errors)
    if dev == "cpu":
        from memprobe.train.sweep import measure_cross_core_s_per_byte

        tr.cross_core_s_per_byte = _part("cross-core term", lambda: measure_cross_core_s_per_byte(n) if n > 1 else 0.0,
                                         None, errors)
    return tr


def measure_numpy_threads(plan: RatePlan, n: int) -> ThreadRates:
    """The GEMM ladders through NumPy's BLAS (no PyTorch): the products only."""
    import numpy as np

    rng = np.random.default_rng(0)

    def m32(*shape: int) -> Any:
        return rng.random(shape, dtype=np.float32) * 0.5 + 0.5

    a1, c1 = m32(1, 1), m32(1, 1)
    over = time_call(lambda: np.matmul(a1, a1, out=c1), plan.reps, plan.batch_s)
    tr = ThreadRates(threads=n, call_overhead_s={"gemm": over, "bmm": over})
    for m, nn, k in plan.gemm:
        a, b, c = m32(m, k), m32(k, nn), m32(m, nn)
        s = time_call(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), plan.reps, plan.batch_s)
        r = work_rate(2.0 * m * nn * k, s, over)
        tr.gemm.append(GemmRate(m, nn, k, "float32", r / 1e9 if r else None, s))
    for g, m, nn, k in plan.bmm:
        a, b, c = m32(g, m, k), m32(g, k, nn), m32(g, m, nn)
        s = time_call(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), plan.reps, plan.batch_s)
        r = work_rate(2.0 * g * m * nn * k, s, over)
        tr.bmm.append(GemmRate(m, nn, k, "float32", r / 1e9 if r else None, s, batch=g))
    return tr


NO_TORCH = ("element-wise classes, convolutions and call terms: a CPU scan made without PyTorch "
            "(pip install 'memprobe[torch]' and scan again)")


def measure_rate_table(device: Any, plan: RatePlan, threads_all: int | None = None,
                       progress: Callable[[str], None] | None = None) -> RateTable:
    """The CPU's rate table at one thread and all threads: through PyTorch where it is installed,
    else the GEMM ladders through NumPy's BLAS."""
    from memprobe.train.network import cpu_threads

    n_all = threads_all or _threads_all()
    t0 = time.perf_counter()
    lib = torch_library()
    table = RateTable(library=lib or "", backend="cpu", statistic="median",
                      method=f"each op class alone, in timed batches of calls; overhead out of each rate "
                             f"({plan.profile} profile: {plan.reps} batches of at least "
                             f"{plan.batch_s * 1e3:g} ms per figure)")
    pool = None
    for key, n in (("threads_1", 1), ("threads_all", n_all)):
        if lib is not None:
            from memprobe.train.spec import torch_threads

            if pool is None:
                pool = Pool(max(s for _, s in level_working_sets(device, "threads_all", plan.memory_max_bytes)))
            errors: list[str] = []
            with torch_threads(n):
                table.threads[key] = measure_torch_threads(plan, device, key, n, "cpu", progress, pool, errors)
            table.absent += [f"{e} ({key})" for e in errors]
        else:
            with cpu_threads(n):
                table.threads[key] = measure_numpy_threads(plan, n)
    if lib is None:
        from memprobe.probes.cpu.compute import blas_library

        table.library = f"numpy/{blas_library()}"
        table.absent.append(NO_TORCH)
    table.seconds = round(time.perf_counter() - t0, 3)
    return table


def _threads_all() -> int:
    from memprobe.probes.cpu.bandwidth import max_threads
    from memprobe.probes.cpu.loaded import usable_cpus

    return max(1, min(max_threads(), len(usable_cpus())))


# ---- stages ---------------------------------------------------------------------------------------
def stage_rates(ctx: ScanContext) -> None:
    """The CPU's rate table (after the compute stage: the levels and their bandwidth working sets
    are known)."""
    if not ctx.device.levels:
        ctx.device.rates = None
        return
    ctx.device.rates = measure_rate_table(ctx.device, ctx.profile.rates,
                                          progress=lambda msg: ctx.progress("rates", 0, 1, msg))


def stage_gpu_rates(ctx: ScanContext) -> None:
    """The GPU's rate table through PyTorch on CUDA (one key, "threads_all"). Written to the CPU
    path's shape; not yet run on a GPU."""
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available() or not ctx.device.levels:
        return
    plan = ctx.profile.rates
    t0 = time.perf_counter()
    table = RateTable(library=f"torch {torch.__version__} (CUDA {torch.version.cuda})", backend="cuda",
                      method="each op class alone on the GPU, batches of calls synchronized")
    errors: list[str] = []
    table.threads["threads_all"] = measure_torch_threads(plan, ctx.device, "threads_all", 1, "cuda", errors=errors)
    table.absent += errors
    table.seconds = round(time.perf_counter() - t0, 3)
    ctx.device.rates = table


def _faster(a: Any, b: Any) -> Any:
    """Of two measurements of one ladder entry, the one with more GFLOP/s."""
    return b if (b.gflops or 0.0) > (a.gflops or 0.0) else a


def stage_rates_recheck(ctx: ScanContext) -> None:
    """The products' ladders (GEMM, batched matmul, convolution, attention) on all threads
    again at the end of the scan; each entry keeps the faster of the two rounds, as a bandwidth
    figure does (`stage_bandwidth_recheck`): a ceiling is a best.

    Why: on a shared 2-vCPU guest the all-thread ladder of one scan ran at 1.0-1.3x one thread's
    while the FMA ceiling measured a second earlier ran at 1.7x, and the same ladder ran at
    1.5-2.1x in 19 of 21 other scans of that guest: for seconds at a time the host can give
    both vCPUs one core's resources. One round of the ladder seconds long cannot tell that from
    the machine, and the scan-alone prediction on all threads then ran 26-42 % high. One thread's
    ladder moves far less and is not repeated; nor are the element-wise classes (their
    figures per level cost the most and the step's memory term reads the levels' bandwidth)."""
    table = ctx.device.rates
    tr = table.threads.get("threads_all") if table is not None else None
    if tr is None or table.backend != "cpu" or not table.library.startswith("torch") or tr.threads <= 1:
        return
    from memprobe.train import torch_families as TF
    from memprobe.train.spec import torch_threads

    # one timed batch per entry: the round is read as a best against the first, not as a median
    plan, sync, over = dataclasses.replace(ctx.profile.rates, reps=1), (lambda: None), tr.call_overhead_s
    errors: list[str] = []
    t0 = time.perf_counter()
    with torch_threads(tr.threads):
        TF.flush_denormals()
        ctx.progress("rates_recheck", 0, 1, "GEMM ladder, all threads")
        again = {"gemm": _part("gemm", lambda: _gemm_ladder(plan, "cpu", sync, over.get("gemm") or 0.0), [], errors),
                 "bmm": _part("bmm", lambda: _bmm_ladder(plan, "cpu", sync, over.get("bmm") or 0.0), [], errors)}
        ctx.progress("rates_recheck", 0, 1, "convolutions and attention, all threads")
        again["conv"] = _part("conv", lambda: _conv_ladder(plan, "cpu", sync, over.get("conv") or 0.0,
                                                          tr.fault_s_per_byte or 0.0), [], errors)
        again["attention"] = _part("attention", lambda: _attention_ladder(plan, "cpu", sync,
                                                                          over.get("attention") or 0.0), [], errors)
    for kind, new in again.items():
        old = getattr(tr, kind)
        if new and len(new) == len(old):  # the same plan: the same entries in the same order
            setattr(tr, kind, [_faster(a, b) for a, b in zip(old, new)])
    table.method += "; products on all threads: the faster of two rounds (the rates stage and the scan's end)"
    table.seconds = round((table.seconds or 0.0) + time.perf_counter() - t0, 3)


CPU_RATE_STAGES: tuple[Stage, ...] = (
    Stage("rates", stage_rates, "per-op rates through the framework (GEMM, convolution, element-wise classes)"),
)
# at the very end of the scan, after the bandwidth's second round
CPU_RATE_RECHECK_STAGES: tuple[Stage, ...] = (
    Stage("rates_recheck", stage_rates_recheck, "the products' ladders on all threads again: each entry the "
          "faster of two rounds"),
)
