"""Steps measured on machines, predicted from each machine's scan alone (`memprobe predict SPEC
--on SCAN`, memprobe/train/on_scan.py): how far a prediction for a machine you don't have
lands from the step measured there.

    python benchmarks/predict_across.py [--examples reports/examples] [--machine NAME ...]
    python benchmarks/predict_across.py --jsonl FILE --scan SCAN   # one machine's records

Each machine folder holds `scan.json` and `predict.jsonl`: one JSON object per line, as
`memprobe predict SPEC --measure --jsonl FILE` appends them (on_scan.record_line: spec, model,
batch, threads, optimizer, measured_s, torch version). Every record is predicted again from
that machine's scan alone (its rate table; nothing is measured here), each (spec, batch,
optimizer) captured once. Per machine and model: the records, the median |error|, the median
|error| and signed median at batch >= 16, and how many predictions were partial (the scan
lacked a rate: such a prediction is a lower bound and its error is not counted; the missing
lines are printed once per machine). The torch version a record was
measured with is printed beside the scan's library: a prediction across versions compares unlike
kernels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402

THREADS = {"threads_1": "1", "threads_all": "all", "1": "1", "all": "all"}


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a predict.jsonl (blank lines skipped; a line that is not a JSON object is
    an error naming its line)."""
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        if not isinstance(rec, dict) or rec.get("measured_s") is None:
            raise SystemExit(f"{path}:{i}: not a measured record (need measured_s)")
        out.append(rec)
    return out


def repo_spec(spec: str) -> str:
    """A record's file SPEC ("benchmarks/predict_zoo.py:mlp", relative to the repository, as
    the zoo benchmarks write it) resolved against the repository when it is not found from the
    folder this runs in; anything else as given."""
    path, sep, fn = spec.rpartition(":")
    if sep and path.endswith(".py") and not Path(path).is_file():
        repo = Path(__file__).resolve().parent.parent
        if (repo / path).is_file():
            return f"{repo / path}:{fn}"
    return spec


def predict_records(scan_path: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record with the prediction from the scan alone: predicted_s, error, partial, missing."""
    from memprobe.train import on_scan as O
    from memprobe.train.spec import SpecError, capture_spec, load_spec

    scan = O.load_scan(scan_path)
    graphs: dict[tuple, Any] = {}
    out = []
    for rec in records:
        spec = repo_spec(rec.get("spec") or rec["model"])
        row = dict(rec)
        try:
            builder = load_spec(spec)
            gk = (spec, rec.get("batch"), rec.get("optimizer", "adamw"))
            if gk not in graphs:
                graphs[gk] = capture_spec(builder, rec.get("batch"), rec.get("optimizer", "adamw"))
            r = O.predict_on(builder, scan, batch=rec.get("batch"), threads=THREADS[str(rec.get("threads", "1"))],
                             optimizer=rec.get("optimizer", "adamw"), graph=graphs[gk])
        except SpecError as exc:
            row.update(predicted_s=None, error=None, partial=True, missing=[str(exc)])
            out.append(row)
            continue
        # a partial prediction leaves kernels out: a lower bound, not an error to count
        row.update(predicted_s=r.predicted_s, error=None if r.partial else r.predicted_s / rec["measured_s"] - 1,
                   partial=r.partial, missing=r.missing, bound=r.bound, library=r.library)
        out.append(row)
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.1f} %"


def _abs_pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: n, median |error|, median |error| and signed median at batch >= 16, partial count."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["model"], []).append(r)
    out = []
    for model, rs in sorted(by.items()):
        errs = [r["error"] for r in rs if r["error"] is not None]
        big = [r["error"] for r in rs if r["error"] is not None and (r.get("batch") or 0) >= 16]
        out.append({"model": model, "n": len(rs), "predicted": len(errs),
                    "median_abs_error": statistics.median(abs(e) for e in errs) if errs else None,
                    "median_abs_error_b16": statistics.median(abs(e) for e in big) if big else None,
                    "signed_median_b16": statistics.median(big) if big else None,
                    "partial": sum(1 for r in rs if r.get("partial")),
                    "torch": sorted({str(r.get("torch")) for r in rs})})
    return out


def report(machine: str, rows: list[dict[str, Any]], verbose: bool = False) -> str:
    lines = [f"== {machine}: {len(rows)} record(s), scan's library "
             f"{next((r.get('library') for r in rows if r.get('library')), '(none)')}"]
    summ = summarise(rows)
    lines.append(table(["model", "records", "median |err|", "|err| b>=16", "signed b>=16", "partial", "measured with"],
                       [[s["model"], s["n"], _abs_pct(s["median_abs_error"]), _abs_pct(s["median_abs_error_b16"]),
                         _pct(s["signed_median_b16"]), s["partial"], ", ".join(f"torch {t}" for t in s["torch"])]
                        for s in summ]))
    if verbose:
        lines.append(table(["model", "batch", "threads", "optimizer", "measured ms", "predicted ms", "error", "bound"],
                           [[r["model"], r.get("batch"), r.get("threads"), r.get("optimizer"),
                             f"{1e3 * r['measured_s']:.3f}",
                             "-" if r["predicted_s"] is None else f"{1e3 * r['predicted_s']:.3f}",
                             "partial" if r.get("partial") else _pct(r["error"]), r.get("bound", "-")]
                            for r in rows]))
    missing = sorted({m for r in rows for m in r.get("missing") or []})
    for m in missing:
        lines.append(f"  missing: {m}")
    return "\n".join(lines)


def machines(examples: Path, names: list[str] | None) -> list[tuple[str, Path, Path]]:
    out = []
    for d in sorted(p for p in examples.iterdir() if p.is_dir()):
        if names and d.name not in names:
            continue
        if (d / "predict.jsonl").exists() and (d / "scan.json").exists():
            out.append((d.name, d / "scan.json", d / "predict.jsonl"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=Path, default=Path(__file__).resolve().parent.parent / "reports" / "examples")
    ap.add_argument("--machine", action="append", help="only this machine folder (repeatable)")
    ap.add_argument("--jsonl", type=Path, help="one machine's records (with --scan)")
    ap.add_argument("--scan", type=Path, help="that machine's scan.json")
    ap.add_argument("--verbose", "-v", action="store_true", help="every record, not only the summary")
    ap.add_argument("--json", type=Path, help="write every record with its prediction here")
    a = ap.parse_args(argv)
    if a.jsonl or a.scan:
        if not (a.jsonl and a.scan):
            ap.error("--jsonl and --scan go together")
        todo = [(a.jsonl.parent.name or "records", a.scan, a.jsonl)]
    else:
        todo = machines(a.examples, a.machine)
        if not todo:
            print(f"no machine under {a.examples} has both scan.json and predict.jsonl", file=sys.stderr)
            return 1
    everything = {}
    for name, scan, jsonl in todo:
        rows = predict_records(scan, read_records(jsonl))
        everything[name] = rows
        print(report(name, rows, a.verbose))
        print()
    if a.json:
        a.json.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
