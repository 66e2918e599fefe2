"""Rates of captured ops, measured here (beside stage 4: result -> **train** -> report: the
inputs side of `memprobe predict`). Needs the optional extra (`memprobe[torch]`).

Every *distinct* kernel of a captured step (`capture.CapturedOp`: the same operator, tensor
shapes, strides, dtypes and other arguments) is replayed alone, with real tensors laid out as
captured (storages shared where the captured tensors shared one), at its captured shape, and
timed with torch_rates' timer (`_warm`, its batches and median, each batch's page faults taken
out). Its call overhead is the same operator on tensors with every dimension cut to one (where
the operator accepts that; else a one-element addition's). A step of 48 identical blocks
measures each distinct op once; the rates are kept per machine in the user's cache folder
(`_cache.user_cache_dir("op_rates")`), keyed by the op, the thread count, the CPU model and
the torch version. Isolated calls only: never a training step.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from memprobe.train import capture as C

# dtypes a replay fills with small positive numbers; integer and boolean tensors hold zeros
# (an index that is valid for every table and class count)
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
CACHE_VERSION = 2  # 2: each rate carries its cold call (cold_call_s)
# the cache flush before a cold call: this many times the largest cache sysfs declares, at
# least FLUSH_MIN_BYTES. Planning, not inference (as the scan's STREAM arrays): a VM's measured
# last cache can be a slice of the host's, whose lines would still serve a smaller flush
FLUSH_CACHE_MULTIPLE = 2
FLUSH_MIN_BYTES = 64 << 20
# a warm call this many times the flush's own time is not replayed cold: a cold start can add at
# most the caches' contents brought from memory, about what rewriting the flush buffer takes
# (it is twice the caches), so under 1/this of the call
COLD_SKIP_MULTIPLE = 50


@dataclass(frozen=True)
class OpRate:
    """One distinct op measured alone: seconds per call at its captured shape (page faults out),
    the call's overhead, and the rate of its work (FLOPs for a GEMM, elements otherwise)."""

    key: str
    op: str
    call_s: float | None  # None: the op could not be replayed (why says why)
    overhead_s: float
    work: float
    bytes: int  # distinct bytes its tensors span: the replay's footprint
    threads: int
    why: str = ""
    # one call right after every cache was flushed (torch_rates.timed_cold), less what the flush
    # costs the framework's own call (measure_op): the op with its operands in memory; None
    # where not measured (a rate from a scan's table, an op with no tiny form)
    cold_call_s: float | None = None

    @property
    def rate(self) -> float | None:
        """Work per second, the call's overhead taken out (torch_rates' rule: never below a
        tenth of the call, where the difference is noise)."""
        if self.call_s is None or self.work <= 0:
            return None
        from memprobe.train.torch_rates import _rate

        return _rate(self.work, self.call_s, self.overhead_s)


def work_of(op: C.CapturedOp) -> float:
    """What an op's rate counts: FLOPs for a GEMM, elements for the rest, 0 for a call."""
    if op.category == "gemm":
        return float(op.flops or 0.0)
    return float(op.elements)


def _arg_repr(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_arg_repr(x) for x in v) + "]"
    return repr(v)


def op_key(op: C.CapturedOp) -> str:
    """What makes two ops the same measurement: operator, tensors' shapes, strides, dtypes and
    which of them share a storage, the other arguments."""
    first: dict[int, int] = {}
    tens = []
    for m in op.inputs:
        alias = first.setdefault(m.storage, len(first))
        tens.append(f"{'x'.join(map(str, m.shape))}/{','.join(map(str, m.stride))}/{m.dtype}@{alias}+{m.offset}")
    kw = ",".join(f"{k}={_arg_repr(v)}" for k, v in op.kwargs)
    return f"{op.name}({';'.join(tens)}|{_arg_repr(op.args)}|{kw})"


def replay_bytes(op: C.CapturedOp) -> int:
    """Distinct bytes of the op's tensors (inputs and outputs): its footprint alone."""
    by: dict[int, int] = {}
    for m in op.inputs + op.outputs:
        by[m.storage] = max(by.get(m.storage, 0), m.nbytes)
    return sum(by.values())


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def replay_call(op: C.CapturedOp, tiny: bool = False) -> Callable[[], Any]:
    """The op alone as a call on real tensors: storages shared as captured, each tensor with its
    captured shape, strides and offset (`tiny`: every dimension cut to one, contiguous)."""
    import torch

    func = _resolve(op.name)
    tensors: list[Any] = []
    if tiny:
        for m in op.inputs:
            t = torch.zeros([1] * len(m.shape), dtype=_torch_dtype(m.dtype))
            if m.dtype in FLOAT_DTYPES:
                t.fill_(0.75)
            tensors.append(t)
    else:
        need: dict[int, tuple[int, str]] = {}
        for m in op.inputs:
            span = 0 if m.numel == 0 else 1 + sum((s - 1) * abs(st) for s, st in zip(m.shape, m.stride))
            end = (m.offset + span) * m.itemsize
            n, _ = need.get(m.storage, (0, m.dtype))
            need[m.storage] = (max(n, end, m.itemsize), m.dtype)
        bases = {}
        g = torch.Generator().manual_seed(0)
        for sid, (nbytes, dtype) in need.items():
            raw = torch.zeros(nbytes, dtype=torch.uint8)
            bases[sid] = raw
            if dtype in FLOAT_DTYPES:
                item = torch.empty((), dtype=_torch_dtype(dtype)).element_size()
                vals = raw[: nbytes // item * item].view(_torch_dtype(dtype))
                vals.uniform_(0.5, 1.0, generator=g)
        for m in op.inputs:
            base = bases[m.storage]
            usable = len(base) // m.itemsize * m.itemsize
            typed = base[:usable].view(_torch_dtype(m.dtype))
            tensors.append(typed.as_strided(m.shape, m.stride, m.offset))

    def fill(v: Any) -> Any:
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "tensor" and isinstance(v[1], int):
            return tensors[v[1]]
        if isinstance(v, (list, tuple)):
            return type(v)(fill(x) for x in v)
        return v

    args = tuple(fill(a) for a in op.args)
    kwargs = {k: fill(v) for k, v in op.kwargs}
    return lambda: func(*args, **kwargs)


def _resolve(name: str) -> Any:
    import torch

    ns, packet, overload = name.split(".")
    return getattr(getattr(getattr(torch.ops, ns), packet), overload)


def _generic_overhead_s() -> float:
    import torch

    from memprobe.train import torch_rates as TR

    a, b = torch.ones(1), torch.ones(1)
    add = torch.ops.aten.add.Tensor
    return TR._timed(lambda: add(a, b))


def flush_bytes() -> int:
    """The size of the buffer a cold call's flush rewrites (FLUSH_CACHE_MULTIPLE)."""
    from memprobe.platform.cpu import read_sysfs_caches

    largest = max((c.get("size_bytes") or 0 for c in read_sysfs_caches()), default=0)
    return max(FLUSH_MIN_BYTES, FLUSH_CACHE_MULTIPLE * largest)


class Flush:
    """The buffer a cold call's flush rewrites (`flush_bytes`) and how long a rewrite takes."""

    def __init__(self) -> None:
        import statistics
        import time

        import torch

        self.buffer = torch.zeros(flush_bytes() // 4, dtype=torch.float32)
        times = []
        for i in range(3):
            t0 = time.perf_counter()
            self.buffer.fill_(float(i))
            times.append(time.perf_counter() - t0)
        self.seconds = statistics.median(times)

    def worth_it(self, warm_call_s: float) -> bool:
        """Whether a cold call could differ from the warm one by more than noise (COLD_SKIP_MULTIPLE)."""
        return warm_call_s < COLD_SKIP_MULTIPLE * self.seconds


def measure_op(op: C.CapturedOp, threads: int, fault_s_per_byte: float = 0.0,
               generic_overhead_s: float | None = None, flush: Flush | None = None,
               cold_penalty_s: dict[str, float] | None = None) -> OpRate:
    """The op replayed alone at its captured shape, warm (calls back to back) and, with `flush`,
    cold (each call after a cache flush; a call too long for the flush to matter,
    `Flush.worth_it`, counts its warm time as its cold); and at a tiny shape for its call
    overhead. `cold_penalty_s`: what a flush costs the tiny call, by operator, filled here for
    the next op of the same operator (it is the framework's, not the shape's)."""
    from memprobe.train import torch_rates as TR

    key = op_key(op)
    work = work_of(op)
    cold_s: float | None = None
    try:
        call = replay_call(op)
        call_s: float | None = TR.timed_without_faults(call, fault_s_per_byte=fault_s_per_byte)
        if flush is not None:
            reps = TR.COLD_REPS if call_s < TR.LONG_CALL_S else TR.LONG_CALL_REPS
            cold_s = TR.timed_cold(call, flush.buffer, reps, fault_s_per_byte) if flush.worth_it(call_s) else call_s
        why = ""
    except Exception as exc:  # an op that cannot run alone: named, never timed as zero
        call_s, why = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    try:
        tiny = replay_call(op, tiny=True)
        over = TR._timed(tiny)
        # a call after a flush also finds the framework's code and tables cold (a one-element
        # call then takes tens of microseconds); a step's calls find them warm, so the cold
        # call keeps only what its data adds: the tiny call's cold penalty comes off
        if cold_s is not None and call_s is not None and cold_s > call_s:
            penalties = cold_penalty_s if cold_penalty_s is not None else {}
            if op.name not in penalties:
                penalties[op.name] = max(0.0, TR.timed_cold(tiny, flush.buffer) - over)
            cold_s = max(call_s, cold_s - penalties[op.name])
    except Exception:
        over = generic_overhead_s if generic_overhead_s is not None else _generic_overhead_s()
        cold_s = None  # no tiny call to take the framework's cold penalty from: not priced
    if call_s is not None:
        over = min(over, call_s)
    return OpRate(key, op.name, call_s, over, work, replay_bytes(op), threads, why, cold_s)


def machine_tag() -> str:
    """The CPU model and torch version the cache belongs to."""
    import torch

    from memprobe.platform.cpu import read_proc_cpuinfo

    info = read_proc_cpuinfo() or {}
    return f"{info.get('model') or platform.processor() or platform.machine()}|torch {torch.__version__}"


def cache_path(tag: str | None = None, folder: Path | None = None) -> Path:
    from memprobe._cache import user_cache_dir

    tag = tag or machine_tag()
    digest = hashlib.sha256(tag.encode()).hexdigest()[:16]
    return (folder or user_cache_dir("op_rates")) / f"{digest}.json"


class RateCache:
    """Measured OpRates of one machine (CPU model, torch version), kept in a JSON file."""

    def __init__(self, path: Path | None, tag: str = "") -> None:
        self.path, self.tag = path, tag
        self.entries: dict[str, OpRate] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                if data.get("version") == CACHE_VERSION and data.get("machine") == tag:
                    self.entries = {k: OpRate(**v) for k, v in data.get("rates", {}).items()}
            except (OSError, ValueError, TypeError):
                self.entries = {}  # an unreadable cache is measured again

    @staticmethod
    def entry_key(key: str, threads: int) -> str:
        return f"{threads}|{key}"

    def get(self, key: str, threads: int) -> OpRate | None:
        return self.entries.get(self.entry_key(key, threads))

    def put(self, r: OpRate) -> None:
        self.entries[self.entry_key(r.key, r.threads)] = r

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "machine": self.tag,
                                       "rates": {k: asdict(v) for k, v in self.entries.items()}}))
            tmp.replace(self.path)
        except OSError:
            pass  # a cache that cannot be written costs a measurement next time, nothing else


def distinct_kernels(graph: C.StepGraph) -> dict[str, C.CapturedOp]:
    """One op per distinct measurement key, in first-dispatch order (views run no kernel)."""
    out: dict[str, C.CapturedOp] = {}
    for op in graph.ops:
        if op.kernel:
            out.setdefault(op_key(op), op)
    return out


def measure_graph_rates(graph: C.StepGraph, threads: int, cache: RateCache | None = None,
                        fault_s_per_byte: float = 0.0,
                        progress: Callable[[str, int, int, str], None] | None = None) -> dict[str, OpRate]:
    """OpRates of every distinct kernel of `graph` at the thread count in force (`threads`):
    from `cache` where measured before, else replayed now (and kept in the cache)."""
    ops = distinct_kernels(graph)
    generic = _generic_overhead_s()
    out: dict[str, OpRate] = {}
    flush = None
    penalties: dict[str, float] = {}
    for i, (key, op) in enumerate(ops.items()):
        hit = cache.get(key, threads) if cache is not None else None
        if hit is None:
            flush = Flush() if flush is None else flush
            hit = measure_op(op, threads, fault_s_per_byte, generic, flush, penalties)
            if cache is not None:
                cache.put(hit)
        out[key] = hit
        if progress is not None:
            progress("rates", i + 1, len(ops), op.name)
    if cache is not None:
        cache.save()
    return out


def replay_sum_s(graph: C.StepGraph, rates: dict[str, OpRate]) -> float:
    """The sum of every captured kernel's replay alone at its shape (a baseline): NaN where a
    kernel could not be replayed."""
    total = 0.0
    for op in graph.ops:
        if not op.kernel:
            continue
        r = rates.get(op_key(op))
        if r is None or r.call_s is None:
            return math.nan
        total += r.call_s
    return total


def measure_step_faults(graph: C.StepGraph, reps: int = 2) -> dict[int, int]:
    """Bytes of fresh pages each op's allocations fault in, per step, on this machine's
    allocator: the step's allocations and frees replayed alone, in the captured order (an op's
    new storages allocated and their pages written; each freed where the captured step let go
    of it, and what the step kept, its gradients, at the next step's start; parameters,
    buffers, states and inputs allocated first and kept), the minor faults counted around each
    allocation (one byte written in each page); the last of `reps` passes (the allocator in its steady state:
    from the second pass on, a third gave the same totals within their run-to-run spread). No kernel runs:
    this is glibc's heap (its mmap threshold and top trim), which decides whether a step's
    megabyte tensors come back from the system every step, not the ops' work."""
    import torch

    from memprobe.train import torch_rates as TR

    persistent = [sid for sid, s in graph.storages.items() if s.role in ("param", "buffer", "state", "input")]
    keep = set(persistent)
    born: dict[int, list[int]] = {}
    seen = set(keep)
    for op in graph.ops:
        for m in op.inputs + op.outputs:
            if m.storage not in seen:
                seen.add(m.storage)
                born.setdefault(op.index, []).append(m.storage)
    kept = [torch.ones(max(1, graph.storages[s].nbytes), dtype=torch.uint8) for s in persistent]
    per_op: dict[int, int] = {}
    live: dict[int, Any] = {}
    for _ in range(max(1, reps)):
        live.clear()  # what the last step kept (its gradients) goes at this one's start
        per_op = {}
        for op in graph.ops:
            for sid in born.get(op.index, ()):
                f0 = TR._faults()
                t = torch.empty(max(1, graph.storages[sid].nbytes), dtype=torch.uint8)
                t[::TR.PAGE_BYTES].fill_(1)  # a byte in each page faults it in as a whole write would
                n = TR._faults() - f0
                if n:
                    per_op[op.index] = per_op.get(op.index, 0) + n * TR.PAGE_BYTES
                live[sid] = t
            for sid in op.frees:
                live.pop(sid, None)
    live.clear()
    del kept
    return per_op
