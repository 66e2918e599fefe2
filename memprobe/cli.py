"""The command line: parses, calls the library, prints. Nothing is measured or decided here.

Every user-facing failure is one line on stderr and a non-zero exit, never a traceback:
  2  bad arguments or input files        3  the machine cannot serve the request (memory)
  4  cannot write the output             5  incomplete: a stage failed (what was measured is written)
  128+N  stopped by signal N: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP (what was measured
         is written, marked incomplete; a second signal exits at once)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

from memprobe import __version__
from memprobe.errors import InputError, MemprobeError, ResourceError
from memprobe.report import terminal as T
from memprobe.train.catalog import (BUILTIN_NAMES, DEFAULT_STUDY_MODELS, FAMILY_MODELS, STUDY_MODELS,
                                    names_text, parse_study_models)

EXIT_USAGE, EXIT_RESOURCE, EXIT_OUTPUT, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 2, 3, 4, 5, 130
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # a scheduler's, a terminal's and a user's stop


class OutputError(MemprobeError):
    exit_code = EXIT_OUTPUT


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the default prints the usage block too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"memprobe: error: {message} (see '{self.prog} --help')\n")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64M', '1G', '512KiB', '4096' -> bytes (binary multiples)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (examples: 4096, 512K, 64M, 1G)")
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    v = int(float(m.group(1)) * mult)
    if v < 64 << 10:
        raise argparse.ArgumentTypeError(f"{text!r} is too small: the sweep starts at 4 KiB and needs room to climb (>= 64K)")
    return v


def _number(cast, low: float, strict: bool, what: str):
    """An argparse type: `cast` of the text, at least `low` (above it when `strict`)."""
    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if v < low or (strict and v == low):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'above' if strict else 'at least'} {low:g}")
        return v
    return parse


positive_int = _number(int, 1, False, "a whole number")
non_negative_int = _number(int, 0, False, "a whole number")
positive_float = _number(float, 0.0, True, "a number")


class _StopOnSignals:
    """SIGTERM and SIGHUP do what Ctrl-C does: the scan stops at the probe's next return to
    Python and keeps what it measured (memprobe.scan.ScanStopped, a KeyboardInterrupt). A second
    signal exits at once, with 128 + its number."""

    def __init__(self) -> None:
        self.old: dict[int, object] = {}
        self.seen = 0
        self.writing = False  # while the files are written a first signal waits for them
        self.deferred: int | None = None

    def _handler(self, signum: int, frame) -> None:
        from memprobe.scan import ScanStopped

        self.seen += 1
        if self.seen > 1:
            os._exit(128 + signum)
        if self.writing:
            self.deferred = signum
            return
        raise ScanStopped(signum)

    def __enter__(self) -> "_StopOnSignals":
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self.old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)


def fmt_bytes(b: float | None) -> str:
    from memprobe.report.text import size_text

    return size_text(b)


def _fmt(v: float | None, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


# ---- scan -----------------------------------------------------------------------------------
def _default_out() -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{socket.gethostname()}-{stamp}"


def _prepare_out(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".memprobe-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {path}: {exc.strerror or exc}") from None
    return path


def write_outputs(result, out: Path) -> list[Path]:
    """scan.json and curves.csv always; report.html when the renderer is there and works."""
    written = []
    try:
        result.save(out / "scan.json")
        written.append(out / "scan.json")
        (out / "curves.csv").write_text(result.curves_csv(), encoding="utf-8")
        written.append(out / "curves.csv")
    except OSError as exc:
        raise OutputError(f"cannot write the scan to {out}: {exc.strerror or exc}") from None
    html = _render_report(result)
    if html is not None:
        (out / "report.html").write_text(html, encoding="utf-8")
        written.append(out / "report.html")
    return written


def _render_report(result) -> str | None:
    try:
        from memprobe.report.html import render_html
    except ImportError:
        return None
    try:
        return render_html(result)
    except Exception as exc:  # the measurements are saved already; say why the page is missing
        print(f"memprobe: warning: report.html not written: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return None


def cmd_scan(args: argparse.Namespace) -> int:
    import psutil

    from memprobe.scan import ScanOptions, new_result, run_scan

    if args.max_size is not None:
        free = psutil.virtual_memory().available
        if args.max_size * 4 > free:
            raise ResourceError(
                f"--max-size {fmt_bytes(args.max_size)} needs 4x that free memory, only "
                f"{fmt_bytes(free)} is available")
    out = _prepare_out(args.out or _default_out())
    # a quick scan leaves the study out unless models are named: its few points, one round on a
    # shared machine, read 11-30 % off from one scan to the next, too loose for a first look
    train = not args.no_train and (not args.quick or args.train_models is not None)
    asked = args.train_models or DEFAULT_STUDY_MODELS
    models, left_out = _models_here(asked) if train else (DEFAULT_STUDY_MODELS, {})
    options = ScanOptions(device=args.device, quick=args.quick, max_size_bytes=args.max_size,
                          repetitions=args.repetitions, seed=args.seed, train=train,
                          train_models=models)
    result = new_result(options)
    stopped: int | None = None
    with _StopOnSignals() as stops:
        if args.wait_quiet is not None:
            from memprobe.platform.load import wait_quiet
            from memprobe.result import Code

            print(f"memprobe: waiting up to {args.wait_quiet:g} s for the machine to go quiet", file=sys.stderr)
            try:
                quiet, waited = wait_quiet(args.wait_quiet)
            except KeyboardInterrupt:
                quiet, waited = False, 0.0
            result.settings.waited_quiet_s = round(waited, 1)
            if not quiet:
                result.warn(Code.CONTENTION, f"the machine did not go quiet within {args.wait_quiet:g} s "
                                             "(--wait-quiet): measuring anyway")
        with _Progress(enabled=not args.no_progress) as progress:
            try:
                run_scan(options, progress.update, result)
            except KeyboardInterrupt as exc:  # Ctrl-C, or ScanStopped from SIGTERM / SIGHUP
                stopped = getattr(exc, "signum", signal.SIGINT)
        predict_failed = None
        if args.predict is not None and stopped is None:
            predict_failed = _scan_predict(args.predict, result)
        stops.writing = True
        paths = write_outputs(result, out)
        if args.jsonl is not None:
            append_jsonl(args.jsonl, result)
            paths.append(args.jsonl)
        if stopped is None and stops.deferred is not None:  # it came as the files were written
            stopped = stops.deferred
    for w in result.warnings:
        print(f"memprobe: {w.text}", file=sys.stderr)
    T.print_summary(result)
    T.print_study_line(result)
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if stopped is not None:
        print(f"memprobe: stopped by {signal.Signals(stopped).name}: the files above hold what was "
              "measured, marked incomplete", file=sys.stderr)
        return 128 + int(stopped)
    if not result.complete:
        print("memprobe: incomplete: a stage failed (see the warnings above); the files hold what was "
              "measured", file=sys.stderr)
        return EXIT_INCOMPLETE
    if predict_failed is not None:
        print(f"memprobe: --predict {args.predict}: {predict_failed[0]}", file=sys.stderr)
        return predict_failed[1]
    if args.quick and not train and not args.no_train:
        print(f"memprobe: the quick scan leaves the training study out; `memprobe train --scan "
              f"{out / 'scan.json'}` runs it against this scan", file=sys.stderr)
    if train:  # a study asked for that measured nothing for a model is not done
        ran = {p.model for p in result.training.points}
        missing = [f"{m}: {left_out[m]}" for m in asked if m in left_out]
        missing += [f"{m}: no point was measured (see the warnings above)" for m in models if m not in ran]
        if missing:
            print(f"memprobe: incomplete, the training study did not run: {'; '.join(missing)}", file=sys.stderr)
            return EXIT_INCOMPLETE
    return 0


def _scan_predict(spec: str, result) -> tuple[str, int] | None:
    """`scan --predict SPEC`: the step predicted against the scan just made, kept in it (its
    report gets the section); (why, exit code) where it could not be."""
    from memprobe.train.spec import SpecError, run_predict
    from memprobe.train.torch_families import torch_missing

    why = torch_missing()
    if why is not None:
        return f"needs PyTorch: {why}", EXIT_USAGE
    try:
        with _Progress() as progress:
            pr = run_predict(spec, result, progress=progress.update)
    except SpecError as exc:
        return str(exc), exc.exit_code
    result.predictions.append(pr.record(spec))
    return None


class _Progress:
    """rich progress on stderr: one bar for the current stage, with the step it is on."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty() or enabled and os.environ.get("MEMPROBE_PROGRESS") == "1"
        self._p = None
        self._task = None
        self._stage = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("[bold]{task.fields[stage]:<14}"), BarColumn(),
                               TextColumn("{task.description}"), TimeElapsedColumn(),
                               console=Console(stderr=True), transient=False)
            self._p.__enter__()
        return self

    def update(self, stage: str, done: int, total: int, message: str = "") -> None:
        if self._p is None:
            if not self.enabled and done == 0:
                print(f"memprobe: {stage}: {message}", file=sys.stderr)
            return
        if stage != self._stage:
            self._task = self._p.add_task(message, total=max(total, 1), stage=stage)
            self._stage = stage
        self._p.update(self._task, completed=done, total=max(total, 1), description=message)

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)






# ---- infer ----------------------------------------------------------------------------------
def cmd_infer(args: argparse.Namespace) -> int:
    from memprobe.infer import InferenceError, infer_levels
    from memprobe.infer.curves import read_curve_file

    if args.curve.suffix.lower() == ".json":  # a saved scan: its own level curve and statistic
        curve = _scan_curve(args.curve)
    else:
        curve = read_curve_file(args.curve, column=args.column, table=args.table)
    try:
        h = infer_levels(curve.size_bytes, curve.latency, curve.unit, samples=curve.samples,
                         pages=getattr(curve, "pages", None))
    except InferenceError as exc:
        raise InputError(f"{args.curve}: {exc}") from None
    if args.json:
        print(json.dumps({
            "source": str(args.curve), "format": curve.source_format, "unit": h.unit,
            "memory_reached": h.memory_reached, "noise": round(h.noise, 4),
            "warnings": [{"code": w.code.value, "text": w.text} for w in h.warnings],
            # six significant digits: a curve's own precision, without binary float noise
            "levels": [{"name": lv.name, "size_bytes": lv.size_bytes, f"latency_{h.unit}": float(f"{lv.latency:.6g}"),
                        "spread": round(lv.spread, 4), "unstable": lv.unstable, "edge": lv.edge,
                        "size_interval_bytes": list(lv.size_range_bytes) if lv.size_range_bytes else None,
                        "notes": [{"code": c.value, "text": t} for c, t in lv.notes]}
                       for lv in h.levels],
            "declared": [{"level": d.level, "type": d.type, "size_bytes": d.size_bytes} for d in curve.declared],
            "declared_note": curve.declared_note or None,
        }, indent=1))
        return 0
    from rich.console import Console

    t = T.table(f"{args.curve} ({curve.source_format}, {len(curve.size_bytes)} points)")
    for col in ("level", "size", "interval", "edge", f"latency {h.unit}", "spread", "flag"):
        t.add_column(col, no_wrap=col in ("edge", "interval"))
    for lv in h.levels:
        from memprobe.report.text import size_range_text

        rng = size_range_text(*lv.size_range_bytes) if lv.size_range_bytes else "-"
        flags = [c.value.replace("_", " ") for c, _ in lv.notes] + (["unstable"] if lv.unstable else [])
        t.add_row(lv.name, fmt_bytes(lv.size_bytes), rng, lv.edge or "-", f"{lv.latency:.3g}", f"{lv.spread:.0%}",
                  ", ".join(flags))
    Console().print(t)
    if curve.declared:
        # beside the inferred levels, as in a scan; inference never read them
        print("declared (not read by inference): "
              + ", ".join(f"L{d.level}{'d' if d.type == 'Data' else 'i' if d.type == 'Instruction' else ''} "
                          f"{fmt_bytes(d.size_bytes)}" for d in curve.declared)
              + (f" [{curve.declared_note}]" if curve.declared_note else ""))
    for lv in h.levels:
        for _, text in lv.notes:
            print(f"memprobe: {lv.name}: {text}", file=sys.stderr)
    for w in h.warnings:
        print(f"memprobe: {w.text}", file=sys.stderr)
    return 0


def _scan_curve(path: Path):
    """The level curve of a saved scan as the scan reads it (infer/curves.py SCAN_CURVES)."""
    from memprobe.infer.curves import SCAN_CURVES, LatencyCurve

    scan = _load_scan(path)
    for key, (name, statistic) in SCAN_CURVES.items():
        dev = scan.devices.get(key)
        c = dev.curve(name) if dev else None
        if c is not None and len(c.points) >= 4:
            ys = c.lows() if statistic == "low" else c.bests()
            return LatencyCurve(c.xs(), ys, c.unit, f"memprobe scan ({key} {name}, {statistic})",
                                samples=[list(p.samples) for p in c.points])
    raise InputError(f"{path}: the scan holds no level curve with 4 or more sizes")


# ---- report / plot / compare / train --------------------------------------------------------
def _load_scan(path: Path):
    from memprobe.result import ScanResult, SchemaError

    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        return ScanResult.load(path)
    except SchemaError as exc:
        raise InputError(f"{path}: {exc}") from None


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_report(args: argparse.Namespace) -> int:
    scan = _load_scan(args.scan)
    from memprobe.report.html import render_html

    out = args.out or args.scan.with_name("report.html")
    # the page links the scan and its curves relative to where the page is written
    csv = args.scan.with_name("curves.csv")
    _write_text(out, render_html(scan, _relative_link(args.scan, out),
                                 _relative_link(csv, out) if csv.exists() else None))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _relative_link(target: Path, page: Path) -> str:
    """`target` as a link from the folder `page` is written in (POSIX separators)."""
    rel = os.path.relpath(target.resolve(), page.resolve().parent)
    return Path(rel).as_posix()


def cmd_plot(args: argparse.Namespace) -> int:
    scan = _load_scan(args.scan)
    from memprobe.report.plot import plot

    if args.out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise InputError(f"--out {args.out}: the format comes from the suffix: .png, .svg or .pdf")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plot(scan, args.what, args.out)
    except OSError as exc:
        raise OutputError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InputError(str(exc)) from None
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _scan_paths(items: list[str]) -> list[Path]:
    """Files, folders (every scan.json and *.jsonl below) and globs, in the order given."""
    import glob

    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            found = sorted(p.rglob("scan.json")) + sorted(p.rglob("*.jsonl"))
            if not found:
                raise InputError(f"{p}: a folder with no scan.json or .jsonl in it")
            out += found
        elif any(ch in it for ch in "*?["):
            found = sorted(Path(g) for g in glob.glob(it, recursive=True))
            if not found:
                raise InputError(f"{it}: matches no file")
            out += found
        else:
            out.append(p)
    return out


def _summaries(paths: list[Path], labels: list[str] | None = None):
    """ScanSummary records: a scan.json's summary, or each line of a --jsonl file. `labels`,
    when given, gets one name per record: the scan's folder (or file), or FILE:LINE."""
    from memprobe.result import ScanSummary

    out = []
    for p in paths:
        if p.suffix == ".jsonl":
            from pydantic import TypeAdapter, ValidationError

            ta = TypeAdapter(ScanSummary)
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
            for n, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        out.append(ta.validate_json(line))
                        if labels is not None:
                            labels.append(f"{p.name}:{n}")
                    except ValidationError as exc:
                        raise InputError(f"{p}:{n}: not a memprobe summary line ({exc.error_count()} problem(s))") from None
        else:
            out.append(_load_scan(p).summary())
            if labels is not None:
                labels.append(p.parent.name if p.name == "scan.json" and p.parent.name else p.name)
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    paths = _scan_paths(args.scans)
    if len(paths) < 2 and not any(p.suffix == ".jsonl" for p in paths):
        raise InputError("compare needs at least two scans (files, folders or globs)")
    if len(paths) == 2 and all(p.suffix == ".json" for p in paths):
        a, b = _load_scan(paths[0]), _load_scan(paths[1])
        from memprobe.check import unlike
        from memprobe.report.compare import render_compare

        for w in unlike(a, b):
            print(f"memprobe: warning: {w}", file=sys.stderr)
        prediction = None
        if args.predict is not None:
            from memprobe.train import on_scan
            from memprobe.train.spec import SpecError
            from memprobe.train.torch_families import torch_missing

            if (why := torch_missing()) is not None:
                raise InputError(f"--predict needs PyTorch: {why}")
            try:
                with _Progress() as progress:
                    prediction = on_scan.compare_scans(args.predict, a, b, progress=progress.update)
            except SpecError as exc:
                print(f"memprobe: {exc}", file=sys.stderr)
                return exc.exit_code
            T.print_machine_changes(prediction["rows"])
        out = args.out or Path("compare.html")
        _write_text(out, render_compare(a, b, prediction))
        print(f"wrote {out}", file=sys.stderr)
        return 0
    from memprobe.report.fleet import render_fleet

    labels: list[str] = []
    summaries = _summaries(paths, labels)
    if len(summaries) < 2:
        raise InputError("compare needs at least two scans; the files given hold fewer")
    html, csv_text, lines = render_fleet(summaries, labels)
    out = args.out or Path("fleet.html")
    _write_text(out, html)
    _write_text(out.with_suffix(".csv"), csv_text)
    for line in lines:
        print(line)
    print(f"wrote {out}, {out.with_suffix('.csv')}", file=sys.stderr)
    return 0


def parse_tolerance(text: str) -> float:
    """A tolerance as a fraction: '5%' and a bare number of 1 or more ('5') are percent, a
    bare number under 1 ('0.05') is the fraction itself."""
    t = text.strip()
    try:
        v = float(t[:-1].strip()) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a tolerance (examples: 5, 5%, 0.05)") from None
    if not t.endswith("%") and v >= 1:
        v /= 100
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie above 0 and below 100 %")
    return v


def cmd_check(args: argparse.Namespace) -> int:
    from memprobe.check import check_scan

    scan, base = _load_scan(args.scan), _load_scan(args.baseline)
    rep = check_scan(scan, base, args.tolerance)
    if args.json:
        print(json.dumps({
            "ok": rep.ok, "scan": str(args.scan), "baseline": str(args.baseline),
            "failed": len(rep.failed), "warnings": rep.warnings,
            "checks": [{"figure": c.figure, "unit": c.unit, "measured": c.measured, "baseline": c.baseline,
                        "ratio": c.ratio, "tolerance": c.tolerance, "status": c.status,
                        "measured_band": c.measured_band, "baseline_band": c.baseline_band, "busy": c.busy}
                       for c in rep.checks]}, indent=1))
    else:
        for w in rep.warnings:
            print(f"memprobe: warning: {w}", file=sys.stderr)
        for c in rep.failed:
            band = lambda lo_hi: f"{c.text(lo_hi[0])} – {c.text(lo_hi[1])}" if lo_hi else "-"
            print(f"FAIL {c.figure}: measured {c.text(c.measured)}, baseline {c.text(c.baseline)}, "
                  f"ratio {c.ratio:.2f} (tolerance {c.tolerance:.0%}; bands of the two scans "
                  f"{band(c.measured_band)} and {band(c.baseline_band)} do not touch)")
        for c in rep.busy:
            print(f"NOT JUDGED {c.figure}: measured {c.text(c.measured)}, baseline {c.text(c.baseline)}, "
                  f"ratio {c.ratio:.2f}, but measured beside busy neighbours ({c.busy})")
        n_info = sum(c.status == "info" for c in rep.checks)
        extra = [f"{n_info} informational"] if n_info else []
        extra += [f"{len(rep.busy)} not judged: measured beside busy neighbours"] if rep.busy else []
        print(f"{'ok' if rep.ok else 'FAILED'}: {len(rep.judged) - len(rep.failed)} of {len(rep.judged)} figures "
              "hold" + (f" ({', '.join(extra)})" if extra else ""))
    return 0 if rep.ok else 1


def append_jsonl(path: Path, result) -> None:
    """One summary line, appended under an exclusive lock with O_APPEND: the nodes of a job array
    can share one file."""
    import fcntl
    from dataclasses import asdict

    from memprobe.result import _clean

    line = json.dumps(_clean(asdict(result.summary())), allow_nan=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode("utf-8"))
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def cmd_train(args: argparse.Namespace) -> int:
    from memprobe.result import Code
    from memprobe.scan import ScanOptions, new_result, run_scan
    from memprobe.scan.training import run_training_study

    models, left_out = _models_here(args.model)
    # one profile for the scan (when there is none to read) and the study: `--quick` picks it
    options = ScanOptions(device=args.device, quick=args.quick, train=False)
    profile = options.profile()
    if args.scan is not None:
        result = _load_scan(args.scan)
    else:
        result = new_result(options)
        with _Progress() as progress:
            run_scan(options, progress.update, result, profile=profile)
    seed = args.seed_table or set(args.model) == set(STUDY_MODELS)
    before = {_point_key(p) for p in result.training.points}
    n_warned = len(result.warnings)
    with _Progress() as progress:
        from memprobe.scan.training import run_seed_table, seed_table_torch_rows

        # the PyTorch rows before the MLP study, as run_training_study runs its families first
        rows = seed_table_torch_rows(result, progress.update) if seed else None
        run_training_study(result, device=args.device, plan=profile.training, framework=args.framework,
                           progress=progress.update, models=models)
        if seed and rows is not None:
            run_seed_table(result, progress.update, torch_rows=rows)
    out = _prepare_out(args.out or _default_out())
    paths = write_outputs(result, out)
    # what this run measured, and what it was asked for and did not do
    fresh = [p for p in result.training.points if _point_key(p) not in before]
    T.print_training(result, fresh)
    if seed:
        T.print_seed_table(result)
    ran = {p.model for p in fresh}
    missing = [f"{m}: {left_out[m]}" for m in args.model if m in left_out]
    missing += [f"{m}: no point was measured" for m in models if m not in ran]
    if seed and not result.training.seed_table:
        missing.append("the seed table: not made")
    for w in result.warnings[n_warned:]:
        if w.code == Code.TRAINING:
            print(f"memprobe: {w.text}", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if missing:
        print(f"memprobe: incomplete, not done: {'; '.join(missing)}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def _point_key(p) -> tuple:
    return (p.model, p.device, p.threads, p.batch, p.working_set_bytes, p.measured_s)


def _models_here(models: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The models asked for that can run here, and those left out with why: without PyTorch
    the CNN and transformer are left out (the MLP runs alone when nothing else is left)."""
    from memprobe.train.torch_families import torch_missing

    families = [m for m in models if m in FAMILY_MODELS]
    why = torch_missing() if families else None
    if why is None:
        return models, {}
    print(f"memprobe: {', '.join(families)} left out: {why}", file=sys.stderr)
    return tuple(m for m in models if m not in FAMILY_MODELS) or DEFAULT_STUDY_MODELS, {m: why for m in families}
















# ---- parser ---------------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    from memprobe.train import on_scan
    from memprobe.train.spec import SpecError, run_predict
    from memprobe.train.torch_families import torch_missing

    why = torch_missing()
    if why is not None:
        raise InputError(f"memprobe predict needs PyTorch: {why}")
    if args.on is not None and args.measure:
        raise InputError("--measure times steps here: it cannot go with --on (a prediction for another machine)")
    if args.jsonl is not None and not args.measure:
        raise InputError("--jsonl writes validation records (measured steps): it needs --measure")
    try:
        there = on_scan.load_scan(args.on) if args.on is not None else None
    except SpecError as exc:
        print(f"memprobe: {exc}", file=sys.stderr)
        return exc.exit_code
    here = None
    if args.scan is not None:
        here = _load_scan(args.scan)
    elif there is None:
        from memprobe.scan import ScanOptions, new_result, run_scan

        print("memprobe: no --scan given: a quick scan first", file=sys.stderr)
        options = ScanOptions(quick=True, train=False)
        here = new_result(options)
        with _Progress() as progress:
            run_scan(options, progress.update, here)
    out = _prepare_out(args.out) if args.out is not None else None
    threads = args.threads if args.threads == "all" else 1
    with _Progress() as progress:
        try:
            if there is not None and here is not None:  # both machines, side by side
                both = on_scan.compare_scans(args.spec, here, there, args.batch, threads, args.optimizer,
                                             progress=progress.update)
                pr, other, rows = both["a"], both["b"], both["rows"]
            elif there is not None:  # that machine, from its scan alone
                pr, other, rows = on_scan.predict_on(args.spec, there, args.batch, threads, args.optimizer,
                                                     progress=progress.update), None, None
            else:
                pr, other, rows = run_predict(args.spec, here, batch=args.batch, threads=threads,
                                              optimizer=args.optimizer, measure=args.measure,
                                              progress=progress.update, use_cache=not args.fresh), None, None
        except SpecError as exc:
            print(f"memprobe: {exc}", file=sys.stderr)
            return exc.exit_code
    if args.json:
        d = pr.to_dict()
        if other is not None:
            d = {"here": d, "there": other.to_dict(), "changes": rows}
        print(json.dumps(d, indent=1))
    else:
        T.print_prediction(pr)
        if other is not None:
            T.print_prediction(other)
            T.print_machine_changes(rows)
    for r in (pr, other):
        for note in getattr(r, "notes", None) or []:
            print(f"memprobe: {r.machine}: {note}", file=sys.stderr)
    partial = [r for r in (pr, other) if r is not None and getattr(r, "partial", False)]
    for r in partial:
        print(f"memprobe: partial prediction for {r.machine}, its step is a lower bound: {'; '.join(r.missing)}",
              file=sys.stderr)
    if args.jsonl is not None:
        try:
            on_scan.append_record(args.jsonl, pr, spec=args.spec)
        except SpecError as exc:
            raise OutputError(str(exc)) from None
    if out is not None:
        from memprobe.report.predict import render_predict

        scan = there if (there is not None and other is None) else here
        _write_text(out / "predict.html", render_predict(pr, scan))
        _write_text(out / "predict.json", json.dumps(pr.to_dict(), indent=1) + "\n")
        if args.scan is None and args.on is None:  # the scan it was predicted from, beside it
            write_outputs(here, out)
        print(f"wrote {out / 'predict.html'}, {out / 'predict.json'}", file=sys.stderr)
    return EXIT_INCOMPLETE if partial else 0


def _models_arg(text: str) -> tuple[str, ...]:
    try:
        return parse_study_models(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from memprobe.result import SCHEMA
    from memprobe.profile import PROFILES

    dflt, quick = PROFILES["default"].cpu, PROFILES["quick"].cpu
    qtrain = PROFILES["quick"].training
    p = _Parser(prog="memprobe", description=(
        "Measure this machine's memory hierarchy (cache levels, line size, latency, bandwidth, "
        "FLOP/s) on the CPU and an NVIDIA GPU, infer the levels from the measured curves, and "
        "show how they shape neural-network training speed."))
    p.add_argument("--version", action="version", version=f"memprobe {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("scan", help="measure this machine and write scan.json, curves.csv, report.html",
                       description=(
                           "Measure the memory hierarchy: core clock, line size, latency against "
                           "working-set size (huge and 4 KiB pages), inferred levels, bandwidth and "
                           "compute ceilings, and the training study. Writes DIR/scan.json (all "
                           "results and raw samples, schema " + SCHEMA + "), DIR/curves.csv (every raw "
                           "curve, one row per point) and DIR/report.html. Progress goes to stderr; "
                           "Ctrl-C still writes what was measured, marked incomplete."))
    s.add_argument("--device", choices=("cpu", "gpu", "all"), default="cpu",
                   help="what to measure: cpu (default), gpu (with the CPU for comparison), or all. "
                        "Without a usable GPU, a GPU request gives a CPU report and one line why.")
    s.add_argument("--quick", action="store_true",
                   help=f"fewer sizes ({quick.points_per_octave} per octave, up to {fmt_bytes(quick.latency_top_bytes)}) "
                        f"and repetitions ({quick.latency_reps} per point), no 4 KiB-page curve and no loaded "
                        "latency and no training study unless --train-models is given (`memprobe train --scan "
                        "DIR/scan.json` runs it later against the scan): about a quarter of the time")
    s.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default: reports/<host>-<timestamp>/)")
    s.add_argument("--max-size", type=parse_size, metavar="SIZE",
                   help=f"largest working set of the latency sweeps, e.g. 512M (default: "
                        f"{fmt_bytes(dflt.latency_top_bytes)}, grown up to {fmt_bytes(dflt.latency_grow_limit_bytes)} "
                        f"while main memory is not reached and the stage stays within "
                        f"{dflt.latency_grow_budget_s:g} s; refused if 4x it is not free). scan.json's "
                        "settings.cpu_plan records the top reached")
    s.add_argument("--repetitions", type=positive_int, metavar="N",
                   help=f"repetitions per point for every stage (default {dflt.latency_reps}, quick "
                        f"{quick.latency_reps}); the spread is kept")
    s.add_argument("--seed", type=non_negative_int, default=12345, help="seed of the random chase cycles")
    s.add_argument("--no-train", action="store_true", help="skip the training study")
    s.add_argument("--train-models", type=_models_arg, default=None, metavar="MODELS",
                   help=f"the training study's models, comma-separated: {', '.join(STUDY_MODELS)} or all "
                        f"(default {', '.join(DEFAULT_STUDY_MODELS)}; none with --quick; "
                        f"{names_text(FAMILY_MODELS)} need PyTorch and add up to 40 s each)")
    s.add_argument("--wait-quiet", nargs="?", const=60.0, type=positive_float, metavar="SECONDS",
                   help="before measuring, wait until other processes use under 10 %% of a CPU for a second "
                        "(at most SECONDS, default 60); each stage records the CPU time other processes used "
                        "beside it either way")
    s.add_argument("--predict", metavar="SPEC",
                   help="after the scan, predict one training step of SPEC (as `memprobe predict` takes it: "
                        "file.py:function, module:function or a built-in) from it, and put it in the report "
                        "(needs PyTorch)")
    s.add_argument("--no-progress", action="store_true", help="plain stage lines instead of progress bars")
    s.add_argument("--jsonl", type=Path, metavar="FILE",
                   help="also append one summary line (host, time, levels, key bandwidths, FLOP/s, complete) "
                        "to FILE, under a lock: a job array's nodes can share one file")
    s.set_defaults(func=cmd_scan)

    pr = sub.add_parser(
        "predict", help="predict one training step of any PyTorch network from the measured hierarchy",
        description=("Capture one training step of SPEC (forward, loss, backward, optimizer step) from "
                     "PyTorch's dispatcher, time each operation from the scan's measured levels and its own "
                     "rate measured alone here (cached per machine), and print the predicted step, what bounds "
                     "each kind of operation, and what could not be modelled. SPEC is path/to/file.py:function "
                     "or package.module:function returning (model, inputs) or (model, inputs, loss_fn), with an "
                     "optional `batch` argument; the loss is loss_fn(output), else output.loss. Built-ins: "
                     f"{', '.join(BUILTIN_NAMES)}. Needs PyTorch (pip install '.[torch]')."))
    pr.add_argument("spec", metavar="SPEC", help="file.py:function, package.module:function, or a built-in name")
    pr.add_argument("--scan", type=Path, metavar="SCAN_JSON", help="the scan of this machine (default: a quick scan now)")
    pr.add_argument("--on", type=Path, metavar="SCAN_JSON",
                    help="predict for the machine that made this scan, from the scan alone (its levels, "
                         "bandwidths, compute ceilings and rate table; nothing is measured here); with --scan, "
                         "both machines side by side and the operations whose bound or level changes")
    pr.add_argument("--batch", type=positive_int, metavar="N", help="batch size, passed to SPEC's function as `batch`")
    pr.add_argument("--threads", default="1", choices=("1", "all"), help="one thread or all (default 1)")
    pr.add_argument("--optimizer", default="adamw", choices=("sgd", "adamw"), help="the step's optimizer (default adamw)")
    pr.add_argument("--measure", action="store_true", help="also time real steps (median after warm-up) and print the error")
    pr.add_argument("--fresh", action="store_true", help="measure every op's rate now instead of reading this "
                    "machine's rate cache (~/.cache/memprobe/op_rates; a rate measured beside a busy neighbour "
                    "stays there until measured again)")
    pr.add_argument("--json", action="store_true", help="one JSON object: model, batch, threads, predicted_s, "
                    "measured_s, coverage, ops, unmodelled")
    pr.add_argument("--jsonl", type=Path, metavar="FILE", help="with --measure, append a validation record "
                    "(model, batch, threads, optimizer, measured_s, versions) as one line to FILE, as "
                    "reports/examples/<machine>/predict.jsonl holds them")
    pr.add_argument("--out", type=Path, metavar="DIR", help="write DIR/predict.html (time by bound, roofline, "
                    "per-op table) and DIR/predict.json")
    pr.set_defaults(func=cmd_predict)

    i = sub.add_parser("infer", help="infer cache levels from a latency curve file",
                       description=(
                           "Read a latency curve and print the inferred levels: count, capacity "
                           "(fitted from the shape of each climb, with the interval the curve cannot narrow and "
                           "the shape: sharp, random, page-colour or logistic), latency and spread. CURVE "
                           "is a CSV with columns size_bytes and latency_ns (or latency_cycles: the unit is "
                           "carried through), lmbench lat_mem_rd output (size in MB, then ns), an "
                           "sbc-bench result file (its ramlat table; the caches its lscpu section declares "
                           "are shown beside the levels, never read by inference), tinymembench output "
                           "(its single random read latency), or a memprobe scan.json or curves.csv (read "
                           "with the statistic the scan reads: the same levels the scan found). The "
                           "format is told from the content."))
    i.add_argument("curve", type=Path, metavar="CURVE")
    i.add_argument("--column", metavar="NAME", default=None,
                   help="sbc-bench: the ramlat column to read (default 1xPTR)")
    i.add_argument("--table", metavar="N", type=int, default=0,
                   help="sbc-bench: the ramlat table to read, 0 for the first (one per core type)")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(func=cmd_infer)

    r = sub.add_parser("report", help="re-render report.html from a saved scan.json",
                       description="Render the HTML report from a saved scan.json alone (any machine's).")
    r.add_argument("scan", type=Path, metavar="SCAN_JSON")
    r.add_argument("--out", type=Path, metavar="FILE", help="output HTML (default: report.html beside the scan)")
    r.set_defaults(func=cmd_report)

    pl = sub.add_parser("plot", help="one figure of a saved scan (png, svg or pdf)",
                        description="Write one figure of a saved scan, for papers and slides.")
    pl.add_argument("scan", type=Path, metavar="SCAN_JSON")
    pl.add_argument("--what", choices=("latency", "bandwidth", "roofline"), default="latency",
                    help="which figure (default latency)")
    pl.add_argument("--out", type=Path, required=True, metavar="FILE",
                    help="output file; .png, .svg or .pdf picks the format")
    pl.set_defaults(func=cmd_plot)

    c = sub.add_parser("compare", help="two scans side by side, or a fleet report of many",
                       description="Two scans: one HTML page side by side (two machines, two settings, CPU vs GPU). "
                                   "Three or more (files, folders of scans, globs such as 'fleet/*/scan.json', or "
                                   "--jsonl files): a fleet report, one row per scan, each key figure's median and "
                                   "its outliers (robust z-score above 3.5), as HTML and CSV; outliers also on stdout.")
    c.add_argument("scans", nargs="+", metavar="SCAN", help="scan.json files, folders, globs or .jsonl files")
    c.add_argument("--out", type=Path, metavar="FILE",
                   help="output HTML (default: compare.html for two scans, fleet.html beside fleet.csv for more)")
    c.add_argument("--predict", metavar="SPEC",
                   help="two scans: also predict one training step of SPEC (as memprobe predict takes it) on "
                        "both machines from their scans alone, and list the operations whose bound or level "
                        "changes (needs PyTorch)")
    c.set_defaults(func=cmd_compare)

    k = sub.add_parser("check", help="check a scan against a baseline scan (exit 0 holds, 1 falls short)",
                       description="Compare a scan with a reference scan of the same kind of machine, figure by "
                                   "figure: each level's size (25 %; informational on a virtual machine's last "
                                   "cache) and latency, bandwidth per kernel and thread count, FMA ceilings, "
                                   "memory latency (10 % each). A figure fails only when it is worse than the "
                                   "baseline's by more than its tolerance and by more than the two scans' own "
                                   "run-to-run spread (the range of the samples each figure was taken from; a "
                                   "size's interval); one that falls short while the scan recorded busy "
                                   "neighbours beside its stage is listed as not judged. Levels pair by overlapping size intervals; a level found in "
                                   "one scan only is a warning. Exit 0 when all hold, 1 when one falls short "
                                   "(each listed), 2 on bad input. For a Slurm prolog, NHC or ReFrame.")
    k.add_argument("scan", type=Path, metavar="SCAN_JSON")
    k.add_argument("--baseline", type=Path, required=True, metavar="BASE_JSON")
    k.add_argument("--tolerance", type=parse_tolerance, metavar="PCT",
                   help="one tolerance for latency, bandwidth and FLOP/s: 5 or 5%% is 5 %% (a bare number of 1 "
                        "or more is percent), 0.05 is 5 %% too (a bare number under 1 is a fraction); "
                        "default 10 %%")
    k.add_argument("--json", action="store_true", help="print a JSON record instead of lines")
    k.set_defaults(func=cmd_check)

    t = sub.add_parser("train", help="run the training study alone (against a saved or fresh scan)",
                       description=(
                           "Train reference networks (the MLP; with --model, a ResNet-style CNN and a "
                           "GPT-style transformer in PyTorch) at sizes whose working set crosses each "
                           "measured level and compare each step time with the roofline prediction built "
                           "from the scan's measured ceilings. Prints one table per model and thread count."))
    t.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where to train (default cpu)")
    t.add_argument("--scan", type=Path, metavar="SCAN_JSON", help="use this saved scan (default: scan now)")
    t.add_argument("--quick", action="store_true",
                   help=f"fewer points (below and above each edge, batch {' and '.join(map(str, qtrain.batches))}, "
                        f"all threads), {qtrain.rounds} round of {qtrain.steps} steps")
    t.add_argument("--framework", choices=("numpy", "torch"), default="numpy",
                   help="numpy (BLAS + Numba kernels, default) or torch (needs the torch extra)")
    t.add_argument("--model", type=_models_arg, default=DEFAULT_STUDY_MODELS, metavar="MODEL",
                   help=f"{', '.join(m + ' (default)' if m in DEFAULT_STUDY_MODELS else m for m in STUDY_MODELS)} "
                        f"or all (comma-separated for several); {names_text(FAMILY_MODELS)} train in PyTorch "
                        "on the CPU (the torch extra)")
    t.add_argument("--seed-table", action="store_true",
                   help="also fill the seed table (MNIST epoch, ResNet-50 epoch, GPT-2 small fine-tune: "
                        "projected from the scan, checked by real scaled-down steps; 1-3 minutes); "
                        "--model all does this too")
    t.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: reports/<host>-<timestamp>/)")
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except MemprobeError as exc:
        print(f"memprobe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("memprobe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
