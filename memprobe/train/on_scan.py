"""`memprobe predict SPEC --on SCAN` and `memprobe compare A B --predict SPEC`: their library side
(stage 4: result -> **train** -> report). A training step predicted for the machine a scan
describes, from that scan alone: the step captured here (machine-independent), its inputs read
from the scan's rate table (`rates_from_scan`), the one predictor (`predict.predict`). Nothing
runs on, or is timed for, the other machine. Needs the optional extra (`memprobe[torch]`) to
capture the step. Nothing prints.

Bad input (a file that is no scan, a scan from a newer memprobe, a scan without levels) raises
`spec.SpecError` with exit code 2 and one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memprobe.train import capture as C
from memprobe.train.spec import (EXIT_BAD_SPEC, Builder, PredictResult, ProgressFn, SpecError, _noop, capture_spec,
                                 load_spec, peak_flops, peak_live_bytes)

THREAD_KEYS = {"1": "threads_1", "all": "threads_all"}


@dataclass
class ScanPredictResult(PredictResult):
    """A PredictResult made from a scan alone: which machine, and what the scan lacked. Where
    anything is missing (`partial`), `predicted_s` sums the kernels that had a rate
    (`kernels_predicted` of `kernels`): a lower bound, not the step's time."""

    machine: str = ""  # the scan's host and CPU model
    scan_started_at: str = ""
    device: str = "cpu"
    library: str = ""  # the rate table's framework
    missing: list[str] = field(default_factory=list)  # one line each; non-empty: partial
    partial: bool = False
    kernels_predicted: int = 0  # kernels with a rate from the table (of `kernels`)
    notes: list[str] = field(default_factory=list)  # figures read in place of others, and why


def load_scan(path: str | Path | Any) -> Any:
    """A ScanResult from `path` (or one given), checked to predict for: SpecError (exit 2, one
    line) for anything unreadable, a newer memprobe's schema, or a scan without levels."""
    from memprobe.result import READABLE_SCHEMAS, ScanResult, SchemaError

    if isinstance(path, ScanResult):
        return path
    p = Path(path)
    try:
        return ScanResult.load(p)
    except SchemaError as exc:
        schema = None
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
            schema = raw.get("schema") if isinstance(raw, dict) else None
        except (OSError, ValueError):
            pass
        if isinstance(schema, str) and schema.startswith("memprobe/") and schema not in READABLE_SCHEMAS:
            raise SpecError(f"--on {p}: written by a newer memprobe (schema {schema}; this one reads "
                            f"{', '.join(READABLE_SCHEMAS)}): upgrade memprobe to predict from it",
                            EXIT_BAD_SPEC) from None
        raise SpecError(f"--on {p}: {exc}", EXIT_BAD_SPEC) from None


def _device(scan: Any, device: str) -> Any:
    dev = (getattr(scan, "devices", None) or {}).get(device)
    if dev is None:
        raise SpecError(f"--on: the scan has no {device.upper()} device to predict for", EXIT_BAD_SPEC)
    if not dev.levels:
        raise SpecError(f"--on: the scan's {device.upper()} has no measured levels (an incomplete scan): "
                        "re-run `memprobe scan` on that machine", EXIT_BAD_SPEC)
    return dev


def threads_key(threads: int | str) -> str:
    """"threads_1" | "threads_all" for --threads 1|all: the scan's own counts, not this machine's."""
    key = THREAD_KEYS.get(str(threads))
    if key is None:
        raise SpecError(f"--threads must be 1 or all (the scan measured those), not {threads!r}")
    return key


def predict_on(spec_or_builder: str | Builder, scan: Any, batch: int | None = None, threads: int | str = 1,
               optimizer: str = "adamw", device: str = "cpu", progress: ProgressFn = _noop,
               graph: C.StepGraph | None = None) -> ScanPredictResult:
    """One training step of SPEC predicted for the machine `scan` describes (a ScanResult or a
    path), from the scan alone. `graph`: a step captured before (the same SPEC, batch and
    optimizer), so that several scans share one capture."""
    from memprobe.train import model as M
    from memprobe.train import predict as P
    from memprobe.train.rates_from_scan import scan_threads, step_inputs_from_scan

    if optimizer not in C.OPTIMIZERS:
        raise SpecError(f"--optimizer must be one of {', '.join(C.OPTIMIZERS)}, not {optimizer!r}")
    scan = load_scan(scan)
    dev = _device(scan, device)
    tkey = threads_key(threads)
    builder = spec_or_builder if isinstance(spec_or_builder, Builder) else load_spec(spec_or_builder)
    n = scan_threads(dev, tkey) or 1
    try:
        ceilings = M.ceilings_from_device(dev, tkey, n, {})
    except M.MissingCeiling as exc:
        raise SpecError(f"--on: the scan cannot be used: {exc}", EXIT_BAD_SPEC) from exc
    if graph is None:
        progress("capture", 0, 1, builder.name)
        graph = capture_spec(builder, batch, optimizer)
        progress("capture", 1, 1, f"{len(graph.kernels)} kernels")
    notes: list[str] = []
    inputs, missing = step_inputs_from_scan(graph, dev, tkey, scan.settings.memprobe_version, notes)
    pred = P.predict(graph, ceilings, inputs)
    peak = peak_flops(dev, tkey)
    rates = getattr(dev, "rates", None)
    kernels = graph.kernels
    from memprobe.train.op_rates import op_key

    with_rate = sum(1 for o in kernels if op_key(o) in inputs.rates)
    from dataclasses import asdict

    return ScanPredictResult(
        model=builder.name, batch=graph.batch, threads=tkey, n_threads=n, optimizer=optimizer,
        predicted_s=pred.predicted_s, measured_s=None, coverage=pred.coverage,
        bound=pred.bound if with_rate else "none",  # nothing predicted: nothing bounds it
        flops=graph.flops, bytes=pred.bytes, peak_live_bytes=peak_live_bytes(graph),
        flops_peak_s=graph.flops / peak if peak else None, replay_sum_s=None,
        ops=P.group_ops(pred), unmodelled=[asdict(u) for u in pred.unmodelled],
        distinct_ops=len({op_key(o) for o in kernels}), kernels=len(kernels),
        machine=" / ".join(x for x in (scan.host, scan.machine.cpu_model or dev.name) if x),
        scan_started_at=scan.started_at, device=device, library=rates.library if rates is not None else "",
        missing=missing, partial=bool(missing), kernels_predicted=with_rate, notes=notes)


def compare_machines(here: PredictResult, there: PredictResult) -> list[dict[str, Any]]:
    """The same step on two machines. First row: the step ({"op": "step", "here_s", "there_s",
    "ratio": there / here, "bound_here", "bound_there"}, with "partial" where either prediction
    is); then every op group (predict.group_ops) whose bound or level differs between them,
    largest |time there - time here| first."""
    ratio = there.predicted_s / here.predicted_s if here.predicted_s > 0 else math.nan
    rows: list[dict[str, Any]] = [{
        "op": "step", "here_s": here.predicted_s, "there_s": there.predicted_s,
        "ratio": ratio if math.isfinite(ratio) else None, "bound_here": here.bound, "bound_there": there.bound,
        "partial": bool(getattr(here, "partial", False) or getattr(there, "partial", False))}]
    a = {g["op"]: g for g in here.ops}
    b = {g["op"]: g for g in there.ops}
    changed = []
    for op in sorted(set(a) | set(b)):
        ga, gb = a.get(op), b.get(op)
        if ga is None or gb is None:
            continue  # predicted on one machine only: the missing lists say why
        if ga["bound"] == gb["bound"] and ga["level"] == gb["level"]:
            continue
        ta, tb = ga["predicted_s"], gb["predicted_s"]
        changed.append({"op": op, "count": ga["count"], "here_s": ta, "there_s": tb, "delta_s": tb - ta,
                        "ratio": tb / ta if ta > 0 else None, "bound_here": ga["bound"], "bound_there": gb["bound"],
                        "level_here": ga["level"], "level_there": gb["level"]})
    changed.sort(key=lambda r: -abs(r["delta_s"]))
    return rows + changed


def compare_scans(spec_or_builder: str | Builder, scan_a: Any, scan_b: Any, batch: int | None = None,
                  threads: int | str = 1, optimizer: str = "adamw", device: str = "cpu",
                  progress: ProgressFn = _noop) -> dict[str, Any]:
    """`memprobe compare A B --predict SPEC`: the step captured once and predicted from each scan
    alone; {"a": ScanPredictResult, "b": ScanPredictResult, "rows": compare_machines(a, b)}."""
    scan_a, scan_b = load_scan(scan_a), load_scan(scan_b)
    for s in (scan_a, scan_b):
        _device(s, device)
    builder = spec_or_builder if isinstance(spec_or_builder, Builder) else load_spec(spec_or_builder)
    if optimizer not in C.OPTIMIZERS:
        raise SpecError(f"--optimizer must be one of {', '.join(C.OPTIMIZERS)}, not {optimizer!r}")
    threads_key(threads)
    progress("capture", 0, 1, builder.name)
    graph = capture_spec(builder, batch, optimizer)
    progress("capture", 1, 1, f"{len(graph.kernels)} kernels")
    a = predict_on(builder, scan_a, batch, threads, optimizer, device, progress, graph)
    b = predict_on(builder, scan_b, batch, threads, optimizer, device, progress, graph)
    return {"a": a, "b": b, "rows": compare_machines(a, b)}


def record_line(result: PredictResult, spec: str | None = None) -> dict[str, Any]:
    """One validation record (`memprobe predict --measure --jsonl FILE` appends it as one JSON
    line): what `benchmarks/predict_across.py` re-predicts from each machine's scan alone and
    compares with `measured_s`. `spec`: the SPEC as given (re-loadable); else the model's name."""
    import platform

    from memprobe import __version__

    try:
        import torch

        tv = torch.__version__
    except ImportError:
        tv = None
    return {"model": result.model, "spec": spec or result.model, "batch": result.batch, "threads": result.threads,
            "n_threads": result.n_threads,
            "optimizer": result.optimizer, "measured_s": result.measured_s,
            "measured_samples_s": list(result.measured_samples_s), "predicted_s": result.predicted_s,
            "torch": tv, "memprobe": __version__, "host": platform.node(), "kernels": result.kernels,
            "coverage": result.coverage}


def append_record(path: str | Path, result: PredictResult, spec: str | None = None) -> dict[str, Any]:
    """`record_line(result, spec)` appended to `path` as one JSON line (the file and its folder
    made where missing); SpecError (exit 2, one line) where it cannot be written, or where the
    result has no measured step (`--jsonl` needs `--measure`)."""
    if result.measured_s is None:
        raise SpecError("--jsonl records a measured step: add --measure", EXIT_BAD_SPEC)
    line = record_line(result, spec)
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, allow_nan=False) + "\n")
    except (OSError, ValueError) as exc:
        raise SpecError(f"--jsonl {p}: cannot write: {getattr(exc, 'strerror', None) or exc}", EXIT_BAD_SPEC) from None
    return line
