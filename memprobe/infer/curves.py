"""Samples from outside the flow: latency curves read from files, for stage 3 (inference) via
`memprobe infer`, so published curves go through the same rules as memprobe's own. Formats: a
CSV with a `size_bytes` column and a `latency_ns` or `latency_cycles` column (the unit is
carried through), or lmbench `lat_mem_rd` output (size in MB, then ns; `"stride=N` headers;
the first stride block is read). Every failure is an InputError with one line that says what is
wrong and where."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from memprobe.errors import InputError

LATENCY_COLUMNS = {"latency_ns": "ns", "latency_cycles": "cycles"}
MB = 1024 * 1024  # lmbench's MB is 2^20 bytes


@dataclass
class LatencyCurve:
    size_bytes: list[float]
    latency: list[float]
    unit: str  # "ns" | "cycles"
    source_format: str  # "csv" | "lmbench" | "memprobe curves.csv" | "sbc-bench ..." | "tinymembench ..."
    # caches the file itself declares (sbc-bench's lscpu section): shown beside the inferred
    # levels, never read by inference
    declared: list = field(default_factory=list)  # memprobe.result.DeclaredCache
    declared_note: str = ""
    # each size's repetitions, where the file keeps them (memprobe's curves.csv): `latency` is a
    # statistic of them; inference reads them for one rule only (levels.infer_levels)
    samples: list[list[float]] | None = None
    # the same core's latency with 4 KiB and with huge pages (sbcbench.PagePair, where the file
    # has it): read only to tell a TLB's reach from a cache (levels.infer_levels)
    pages: object | None = None


# the curve a scan infers its levels from, per device, and the statistic it reads of each
# size's samples (a CPU sweeps several passes on a shared machine: lower quartile; a GPU one
# pass no one shares: best); memprobe's own curves.csv is read the same way
SCAN_CURVES = {"cpu": ("latency_hugepage", "low"), "gpu": ("latency_ca_cycles", "best")}


def read_curve_file(path: str | Path, column: str | None = None, table: int = 0) -> LatencyCurve:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a curve file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        return parse_curve(raw, name=str(p), column=column, table=table)
    except InputError:
        raise


def parse_curve(raw: bytes | str, name: str = "input", column: str | None = None, table: int = 0) -> LatencyCurve:
    """A curve from its text; the reader is picked by content (one module per format: this one
    for CSV, lmbench and memprobe's curves.csv, sbcbench.py, tinymembench.py). `column` and
    `table` choose within an sbc-bench file (its ramlat column, its n-th table)."""
    if isinstance(raw, bytes):
        if b"\x00" in raw[:4096]:
            raise InputError(f"{name}: binary file, expected a text curve (CSV or lmbench output)")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"{name}: not UTF-8 text, expected a CSV or lmbench output") from None
    else:
        text = raw
    if not text.strip():
        raise InputError(f"{name}: empty file")
    from memprobe.infer import sbcbench, tinymembench

    if sbcbench.is_sbcbench(text):  # before tinymembench: sbc-bench files hold its output too
        return _checked(sbcbench.parse(text, name, column=column, table=table), name)
    if column is not None:
        raise InputError(f"{name}: --column applies to sbc-bench ramlat tables only")
    if tinymembench.is_tinymembench(text):
        return _checked(tinymembench.parse(text, name), name)
    first = next(line for line in text.splitlines() if line.strip())
    if first.startswith("device,curve,") and "samples" in first:
        return _parse_memprobe_csv(text, name)
    if "size_bytes" in first or "," in first:
        return _parse_csv(text, name)
    return _parse_lmbench(text, name)


def _number(tok: str, name: str, line_no: int) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise InputError(f"{name}:{line_no}: {tok.strip()[:40]!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{name}:{line_no}: {tok.strip()[:40]!r} must be a positive number")
    return v


def _parse_csv(text: str, name: str) -> LatencyCurve:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # e.g. a stray carriage return inside a field
        raise InputError(f"{name}: not a readable CSV file ({exc})") from None
    header = [h.strip() for h in rows[0]]
    if "size_bytes" not in header:
        raise InputError(f"{name}:1: the CSV header needs a 'size_bytes' column (got {','.join(header)[:80]!r})")
    lat_col = next((c for c in header if c in LATENCY_COLUMNS), None)
    if lat_col is None:
        raise InputError(f"{name}:1: the CSV header needs a 'latency_ns' or 'latency_cycles' column")
    si, li = header.index("size_bytes"), header.index(lat_col)
    sizes, lats = [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= max(si, li):
            raise InputError(f"{name}:{n}: expected {len(header)} columns, got {len(row)}")
        sizes.append(_number(row[si], name, n))
        lats.append(_number(row[li], name, n))
    return _checked(LatencyCurve(sizes, lats, LATENCY_COLUMNS[lat_col], "csv"), name)


def _parse_memprobe_csv(text: str, name: str) -> LatencyCurve:
    """memprobe's curves.csv: the CPU's (else the GPU's) level curve, each size read by the
    statistic the scan itself reads (SCAN_CURVES), from the samples kept in the file."""
    from memprobe.result import CurvePoint

    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:
        raise InputError(f"{name}: not a readable CSV file ({exc})") from None
    for device, (curve, statistic) in SCAN_CURVES.items():
        pts = [r for r in rows if r.get("device") == device and r.get("curve") == curve]
        if not pts:
            continue
        sizes, lats, kept = [], [], []
        for n, r in enumerate(pts, start=2):
            try:
                samples = [float(v) for v in (r.get("samples") or "").split()]
            except ValueError:
                raise InputError(f"{name}: curve {curve}: a sample is not a number") from None
            if not samples:
                continue
            p = CurvePoint(_number(r["x"], name, n), samples)
            sizes.append(p.x)
            lats.append(p.low if statistic == "low" else p.best)
            kept.append(samples)
        unit = pts[0].get("unit") or "ns"
        return _checked(LatencyCurve(sizes, lats, unit if unit in ("ns", "cycles") else "ns",
                                     f"memprobe curves.csv ({device} {curve}, {statistic})", samples=kept), name)
    raise InputError(f"{name}: a memprobe curves.csv without a level curve "
                     f"({' or '.join(c for c, _ in SCAN_CURVES.values())})")


def _parse_lmbench(text: str, name: str) -> LatencyCurve:
    sizes, lats = [], []
    blocks_seen = 0
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if s.startswith('"') or s.lower().startswith("stride"):
            blocks_seen += 1
            if blocks_seen > 1 and sizes:
                break  # only the first stride block
            continue
        parts = s.split()
        if len(parts) != 2:
            raise InputError(f"{name}:{n}: expected 'size_MB latency_ns' (lmbench lat_mem_rd) "
                             f"or a CSV with size_bytes, got {s[:40]!r}")
        sizes.append(_number(parts[0], name, n) * MB)
        lats.append(_number(parts[1], name, n))
    return _checked(LatencyCurve(sizes, lats, "ns", "lmbench"), name)


def _checked(c: LatencyCurve, name: str) -> LatencyCurve:
    if len(set(c.size_bytes)) < 4:
        raise InputError(f"{name}: a curve needs at least 4 distinct sizes, got {len(set(c.size_bytes))}")
    return c
