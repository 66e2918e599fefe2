"""`memprobe predict SPEC`'s library side (stage 4: result -> **train** -> report): load the
user's network, capture its step, measure its ops' rates here, predict, optionally time real
steps. Needs the optional extra (`memprobe[torch]`). Nothing prints; progress goes through a
callback.

SPEC is `path/to/file.py:function`, `package.module:function`, or a built-in name (BUILTINS,
read from `catalog.MODELS`: the families' networks as `torch_families` builds them, and a plain
MLP). The function returns `(model, inputs)` or `(model, inputs, loss_fn)` and may take a
`batch` argument; `inputs` is a tensor, a tuple (positional arguments) or a dict (keyword
arguments). The loss is `loss_fn(output)` where given, else `output.loss` (Hugging Face's
convention). Every bad input raises `SpecError`: a one-line message and the exit code the CLI
should return (2: the spec or its return is wrong; 3: the user's code fails, or the step does
not fit in memory).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import math
import os
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from memprobe.train import capture as C
from memprobe.train.catalog import MODELS

ProgressFn = Callable[[str, int, int, str], None]
EXIT_BAD_SPEC = 2
EXIT_USER_CODE = 3
# the step's live tensors must fit in this fraction of the memory free now to be measured
MEMORY_FRACTION = 0.8


class SpecError(Exception):
    """A SPEC that cannot be predicted: `str(e)` is one line, `e.exit_code` 2 or 3."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_SPEC) -> None:
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code


def _noop(stage: str, done: int, total: int, msg: str = "") -> None:
    return None


# ---- built-in networks: catalog.MODELS, each with its builder ----------------------------------
BUILTINS: dict[str, Callable[..., tuple]] = {m.name: m.builder for m in MODELS}


# ---- loading a SPEC -----------------------------------------------------------------------------
@dataclass
class Builder:
    """The user's function behind a SPEC, and what it is called."""

    name: str
    fn: Callable[..., Any]

    @property
    def takes_batch(self) -> bool:
        try:
            sig = inspect.signature(self.fn)
        except (TypeError, ValueError):
            return False
        return "batch" in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())

    def __call__(self, batch: int | None = None) -> tuple[Any, Any, Callable[[Any], Any] | None]:
        """(model, inputs, loss_fn or None), checked; SpecError for anything else."""
        import torch

        if batch is not None and not self.takes_batch:
            raise SpecError(f"{self.name} takes no batch argument; leave --batch out or add `batch` to it")
        try:
            got = self.fn(batch=batch) if batch is not None else self.fn()
        except SpecError:
            raise
        except Exception as exc:
            raise SpecError(f"{self.name} raised {type(exc).__name__}: {_first_line(exc)}", EXIT_USER_CODE) from exc
        if not isinstance(got, tuple) or len(got) not in (2, 3):
            raise SpecError(f"{self.name} must return (model, inputs) or (model, inputs, loss_fn), "
                            f"not {_describe(got)}")
        model, inputs = got[0], got[1]
        loss_fn = got[2] if len(got) == 3 else None
        if not isinstance(model, torch.nn.Module):
            raise SpecError(f"{self.name}: the model must be a torch.nn.Module, not {type(model).__name__}")
        if not (isinstance(inputs, (torch.Tensor, tuple, list, dict))):
            raise SpecError(f"{self.name}: inputs must be a tensor, a tuple or a dict, not {type(inputs).__name__}")
        if loss_fn is not None and not callable(loss_fn):
            raise SpecError(f"{self.name}: loss_fn must be callable, not {type(loss_fn).__name__}")
        return model, inputs, loss_fn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "")[:200]


def _describe(v: Any) -> str:
    if isinstance(v, tuple):
        return f"a tuple of {len(v)}"
    return type(v).__name__


def load_spec(spec: str) -> Builder:
    """The builder a SPEC names: a built-in name, `file.py:function` or `module:function`."""
    if spec in BUILTINS:
        return Builder(spec, BUILTINS[spec])
    where, sep, fname = spec.rpartition(":")
    if not sep or not where or not fname:
        raise SpecError(f"SPEC {spec!r}: expected path/to/file.py:function, package.module:function "
                        f"or one of {', '.join(BUILTINS)}")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise SpecError(f"SPEC {spec!r}: no file {where}")
        mod_name = f"memprobe_spec_{abs(hash(str(path.resolve())))}"
        try:
            ispec = importlib.util.spec_from_file_location(mod_name, path)
            if ispec is None or ispec.loader is None:
                raise SpecError(f"SPEC {spec!r}: {where} cannot be imported as Python")
            module = importlib.util.module_from_spec(ispec)
            sys.modules[mod_name] = module
            ispec.loader.exec_module(module)
        except SpecError:
            raise
        except Exception as exc:
            raise SpecError(f"SPEC {spec!r}: importing {where} raised {type(exc).__name__}: {_first_line(exc)}",
                            EXIT_USER_CODE) from exc
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            raise SpecError(f"SPEC {spec!r}: no module {where} ({_first_line(exc)})") from exc
        except Exception as exc:
            raise SpecError(f"SPEC {spec!r}: importing {where} raised {type(exc).__name__}: {_first_line(exc)}",
                            EXIT_USER_CODE) from exc
    fn = getattr(module, fname, None)
    if fn is None:
        raise SpecError(f"SPEC {spec!r}: {where} has no {fname}")
    if not callable(fn):
        raise SpecError(f"SPEC {spec!r}: {fname} is not a function")
    return Builder(f"{Path(where).stem if where.endswith('.py') else where}:{fname}", fn)


# ---- capture, predict, measure ------------------------------------------------------------------
def capture_spec(builder: Builder, batch: int | None, optimizer: str) -> C.StepGraph:
    """The builder's step captured under fake tensors, nothing allocated. Where the user's code
    cannot build the network on fake tensors (an initialiser that reads a value: ViT's), the
    network is built for real and its step captured on fake copies (the weights allocated once,
    no activation, gradient or state); where the step itself reads values, on real tensors."""
    def build() -> tuple:
        return builder(batch)

    try:
        return C.capture_step(build, optimizer=optimizer, name=builder.name, batch=batch, fake=True)
    except C.CaptureError as exc:
        raise SpecError(f"{builder.name}: {exc}", EXIT_BAD_SPEC) from exc
    except SpecError as exc:
        if exc.exit_code != EXIT_USER_CODE:
            raise
    except Exception:
        pass
    model, inputs, loss_fn = builder(batch)  # real: a failure here is the user's code's own
    errors: list[Exception] = []
    for fake in (True, False):
        try:
            return C.capture_step(model=model, inputs=inputs, loss_fn=loss_fn, optimizer=optimizer,
                                  name=builder.name, batch=batch, fake=fake)
        except C.CaptureError as exc:
            raise SpecError(f"{builder.name}: {exc}", EXIT_BAD_SPEC) from exc
        except Exception as exc:
            errors.append(exc)
    exc = errors[-1]
    raise SpecError(f"{builder.name}: the training step failed: {type(exc).__name__}: {_first_line(exc)}",
                    EXIT_USER_CODE) from exc


def peak_live_bytes(graph: C.StepGraph) -> int:
    """The most bytes alive at once in the step: parameters, buffers, states and inputs all
    along, every other storage from its first op to its last (a lower bound of the step's
    memory, the allocator's slack aside)."""
    persistent = {sid for sid, s in graph.storages.items() if s.role in ("param", "buffer", "state", "input")}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for op in graph.ops:
        for m in op.inputs + op.outputs:
            first.setdefault(m.storage, op.index)
            last[m.storage] = op.index
    base = sum(graph.storages[s].nbytes for s in persistent)
    delta = [0] * (len(graph.ops) + 1)
    for sid, f in first.items():
        if sid in persistent:
            continue
        delta[f] += graph.storages[sid].nbytes
        delta[last[sid] + 1] -= graph.storages[sid].nbytes
    peak = live = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return base + peak


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op pool, BLAS and OpenMP at n threads for the block."""
    import torch

    from memprobe.train import network as N

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with N.cpu_threads(n):
            yield
    finally:
        torch.set_num_threads(before)


def resolve_threads(threads: int | str) -> tuple[str, int]:
    """("threads_1" | "threads_all", the count) for --threads 1|all (or a number)."""
    from memprobe.train import network as N

    if threads in (1, "1"):
        return "threads_1", 1
    n_all = N.max_threads()
    if threads in ("all", n_all, str(n_all)):
        return "threads_all", n_all
    raise SpecError(f"--threads must be 1 or all (the scan measured those), not {threads!r}")


def peak_flops(device: Any, tkey: str) -> float | None:
    """The scan's measured FLOP/s peak at a thread count: the float32 FMA ceiling, or the best
    library GEMM where that is missing."""
    comp = getattr(device, "compute", None)
    if comp is None:
        return None
    v = (comp.fma.get("float32") or {}).get(tkey)
    if v and not comp.flagged(f"fma/float32/{tkey}"):
        return float(v) * 1e9
    gem = [g.gflops for g in comp.gemm if g.gflops and g.dtype == "float32"]
    return max(gem) * 1e9 if gem else None


@dataclass
class PredictResult:
    """One network's predicted step on one machine, JSON-able (`to_dict`)."""

    model: str
    batch: int
    threads: str
    n_threads: int
    optimizer: str
    predicted_s: float
    measured_s: float | None
    coverage: float
    bound: str
    flops: float
    bytes: float
    peak_live_bytes: int
    flops_peak_s: float | None  # baseline: the step's FLOPs at the scan's measured peak
    replay_sum_s: float | None  # baseline: every captured kernel replayed alone, summed
    ops: list[dict[str, Any]] = field(default_factory=list)  # by operator (predict.group_ops)
    unmodelled: list[dict[str, Any]] = field(default_factory=list)
    distinct_ops: int = 0
    kernels: int = 0
    measured_samples_s: list[float] = field(default_factory=list)  # each timed step; measured_s: their median

    @property
    def error(self) -> float | None:
        if not self.measured_s:
            return None
        return (self.predicted_s - self.measured_s) / self.measured_s

    def record(self, spec: str) -> Any:
        """The typed record a scan keeps (`result.StepPrediction`, `memprobe scan --predict`)."""
        from memprobe.result import OpGroupPrediction, StepPrediction, UnmodelledOp

        return StepPrediction(
            model=self.model, spec=spec, batch=self.batch, threads=self.threads, n_threads=self.n_threads,
            optimizer=self.optimizer, predicted_s=self.predicted_s, coverage=self.coverage, bound=self.bound,
            flops=self.flops, bytes=self.bytes, measured_s=self.measured_s, flops_peak_s=self.flops_peak_s,
            replay_sum_s=self.replay_sum_s, kernels=self.kernels, distinct_ops=self.distinct_ops,
            peak_live_bytes=self.peak_live_bytes, measured_samples_s=list(self.measured_samples_s),
            ops=[OpGroupPrediction(**{k: g[k] for k in ("op", "count", "flops", "bytes", "level", "bound",
                                                         "predicted_s", "share")}) for g in self.ops],
            unmodelled=[UnmodelledOp(**{k: u[k] for k in ("name", "count", "time_s", "share", "why")})
                        for u in self.unmodelled])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["error"] = self.error
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def run_predict(spec: str | Builder, scan: Any, batch: int | None = None, threads: int | str = 1,
                optimizer: str = "adamw", measure: bool = False, progress: ProgressFn = _noop,
                steps: int = 5, use_cache: bool = True, free_bytes: float | None = None) -> PredictResult:
    """Predict one training step of SPEC on the machine `scan` (a ScanResult) describes, with
    its ops' rates measured here (cached per machine); with `measure`, real steps timed too."""
    from memprobe.train import model as M
    from memprobe.train import op_rates as R
    from memprobe.train import predict as P
    from memprobe.train.inputs import measure_step_inputs

    if optimizer not in C.OPTIMIZERS:
        raise SpecError(f"--optimizer must be one of {', '.join(C.OPTIMIZERS)}, not {optimizer!r}")
    builder = spec if isinstance(spec, Builder) else load_spec(spec)
    device = (getattr(scan, "devices", None) or {}).get("cpu")
    if device is None:
        raise SpecError("the scan has no CPU device to predict for")
    tkey, n = resolve_threads(threads)
    try:
        ceilings = M.ceilings_from_device(device, tkey, n, {})
    except M.MissingCeiling as exc:
        raise SpecError(f"the scan cannot be used: {exc}") from exc
    progress("capture", 0, 1, builder.name)
    graph = capture_spec(builder, batch, optimizer)
    progress("capture", 1, 1, f"{len(graph.kernels)} kernels")
    live = peak_live_bytes(graph)
    if free_bytes is None:
        import psutil

        free_bytes = float(psutil.virtual_memory().available)
    if measure and live > MEMORY_FRACTION * free_bytes:
        raise SpecError(f"{builder.name}: the step needs at least {live / 2**30:.1f} GiB, "
                        f"{free_bytes / 2**30:.1f} GiB free: too large to measure here (leave --measure out)",
                        EXIT_USER_CODE)
    cache = R.RateCache(R.cache_path(), R.machine_tag()) if use_cache else None
    with torch_threads(n):
        # the allocator's faults per step, where the step's tensors fit in memory to replay them
        inputs = measure_step_inputs(graph, n, optimizer, cache, progress,
                                     step_faults=live <= MEMORY_FRACTION * free_bytes)
        rates = inputs.rates
        pred = P.predict(graph, ceilings, inputs)
        measured, samples = None, []
        if measure:
            progress("measure", 0, 1, f"{steps} steps")
            model, inputs_real, loss_fn = builder(batch)
            try:
                samples = P.measure_step_samples(model, inputs_real, loss_fn, optimizer, steps)
                measured = statistics.median(samples)
            except (MemoryError, RuntimeError) as exc:
                if isinstance(exc, MemoryError) or "alloc" in str(exc).lower() or "memory" in str(exc).lower():
                    raise SpecError(f"{builder.name}: the step ran out of memory: {_first_line(exc)}",
                                    EXIT_USER_CODE) from exc
                raise SpecError(f"{builder.name}: the training step failed: {type(exc).__name__}: "
                                f"{_first_line(exc)}", EXIT_USER_CODE) from exc
            progress("measure", 1, 1, f"{measured * 1e3:.2f} ms")
    peak = peak_flops(device, tkey)
    replay = R.replay_sum_s(graph, rates)
    return PredictResult(
        model=builder.name, batch=graph.batch, threads=tkey, n_threads=n, optimizer=optimizer,
        predicted_s=pred.predicted_s, measured_s=measured, coverage=pred.coverage, bound=pred.bound,
        flops=graph.flops, bytes=pred.bytes, peak_live_bytes=live,
        flops_peak_s=graph.flops / peak if peak else None,
        replay_sum_s=replay if math.isfinite(replay) else None,
        ops=P.group_ops(pred), unmodelled=[asdict(u) for u in pred.unmodelled],
        distinct_ops=len(R.distinct_kernels(graph)), kernels=len(graph.kernels), measured_samples_s=samples)
