"""Samples from outside the flow: sbc-bench result files (github.com/ThomasKaiser/sbc-bench,
`results/*.txt`), for stage 3 (inference) via `memprobe infer`.

sbc-bench runs ramlat (tinymembench's latency code, one dependent chase per size, 4 KiB to
some hundred MiB, one point per octave) on one core of each cluster and prints one table per
core: `Executing ramlat on cpu4 (Cortex-A76), results in ns:`, a header
`size: 1x32 2x32 1x64 2x64 1xPTR 2xPTR 4xPTR 8xPTR` and a row per size (`4k: 1.435 ...`).
The `1xPTR` column (one pointer-sized chase) is read by default; `column` picks another. Every
table of the file is read (`tables`); a curve is one table.

The file's lscpu section declares the caches (`L1d cache: 6 MiB (96 instances)`, or an older
lscpu's `L2 cache: 512K`, per core). They are carried as declared caches, per instance,
beside the curve and never fed to inference. lscpu sums each cache over every core, so on a
machine with two kinds of cores the per-instance figure mixes them: `declared_note` says so.

Newer sbc-bench files also hold tinymembench's latency test run twice on the same core, with
4 KiB pages (`[MADV_NOHUGEPAGE]`) and with huge pages (`[MADV_HUGEPAGE]`): `page_pair` reads the
pair run on the ramlat table's core, which inference reads to tell a TLB's reach from a cache
(levels.py, `_tlb_steps`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memprobe.errors import InputError
from memprobe.result import DeclaredCache

DEFAULT_COLUMN = "1xPTR"
TMB_HEADER = re.compile(r"^block size\s*:\s*single random read\s*/\s*dual random read,\s*"
                        r"\[(?P<kind>MADV_NOHUGEPAGE|MADV_HUGEPAGE)\]", re.M)
TMB_ROW = re.compile(r"^\s*(?P<size>\d+)\s*:\s*(?P<single>[\d.]+)\s*ns")
BENCH_ON = re.compile(r"^Executing benchmark on (?P<cpu>cpu\d+)", re.M)
TABLE_START = re.compile(r"^Executing ramlat on (?P<cpu>cpu\d+)(?: \((?P<core>[^)]*)\))?", re.M)
HEADER = re.compile(r"^\s*size:\s+(?P<cols>\S.*)$")
ROW = re.compile(r"^\s*(?P<n>\d+)(?P<unit>[kKmMgG])\s*:\s*(?P<vals>.*)$")
UNIT = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
LSCPU = re.compile(r"^(?P<name>L1d|L1i|L2|L3|L4) cache:\s+(?P<num>[\d.]+)\s*(?P<unit>[KMG])(?:i?B)?"
                   r"(?:\s*\((?P<inst>\d+) instances?\))?", re.M)
SOCKETS = re.compile(r"^Socket\(s\):\s+(\d+)", re.M)
CORES = re.compile(r"^Core\(s\) per (?:socket|cluster):\s+(\d+)", re.M)
MODEL = re.compile(r"^Model name:\s+(.+)$", re.M)


@dataclass
class RamlatTable:
    cpu: str  # "cpu4"
    core: str  # "Cortex-A76", "" when sbc-bench printed none
    columns: list[str]
    size_bytes: list[float]
    values: dict[str, list[float]]  # column -> ns per size

    @property
    def label(self) -> str:
        return f"{self.cpu} ({self.core})" if self.core else self.cpu


@dataclass
class PagePair:
    """One core's random-read latency at each size with 4 KiB pages and with huge pages (ns over
    an L1 hit, as tinymembench prints it: only differences are read)."""
    size_bytes: list[float]
    small: list[float]
    huge: list[float]


def page_pair(text: str, cpu: str) -> PagePair | None:
    """The tinymembench 4 KiB- and huge-page latency tables run on `cpu` (the `Executing
    benchmark on cpuN` line before them; a file with one such pair and no core named runs it on
    the only cluster), or None where the file has no such pair for that core."""
    runs: dict[str | None, dict[str, dict[float, float]]] = {}
    for h in TMB_HEADER.finditer(text):
        on = [m.group("cpu") for m in BENCH_ON.finditer(text, 0, h.start())]
        rows: dict[float, float] = {}
        for line in text[h.end():].splitlines()[1:]:
            m = TMB_ROW.match(line)
            if not m:
                if rows:
                    break
                continue
            rows[float(m.group("size"))] = float(m.group("single"))
        runs.setdefault(on[-1] if on else None, {}).setdefault(h.group("kind"), rows)
    pair = runs.get(cpu) or (runs.get(None) if len(runs) == 1 else None)
    if not pair or len(pair) != 2:
        return None
    small, huge = pair["MADV_NOHUGEPAGE"], pair["MADV_HUGEPAGE"]
    sizes = sorted(set(small) & set(huge))
    if len(sizes) < 4:
        return None
    return PagePair(sizes, [small[s] for s in sizes], [huge[s] for s in sizes])


def read_page_pair(path) -> PagePair:
    """A page pair kept as CSV (size_bytes, small_ns, huge_ns), as benchmarks/published_build.py
    writes it beside a curve."""
    import csv
    from pathlib import Path

    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    return PagePair([float(r["size_bytes"]) for r in rows], [float(r["small_ns"]) for r in rows],
                    [float(r["huge_ns"]) for r in rows])


def is_sbcbench(text: str) -> bool:
    return bool(TABLE_START.search(text))


def tables(text: str, name: str = "input") -> list[RamlatTable]:
    """Every ramlat table of an sbc-bench result, in file order."""
    out = []
    lines = text.splitlines()
    for m in TABLE_START.finditer(text):
        start = text.count("\n", 0, m.start()) + 1
        cols: list[str] | None = None
        sizes: list[float] = []
        vals: dict[str, list[float]] = {}
        for n in range(start, min(start + 60, len(lines))):
            line = lines[n]
            if cols is None:
                h = HEADER.match(line)
                if h:
                    cols = h.group("cols").split()
                    vals = {c: [] for c in cols}
                continue
            r = ROW.match(line)
            if not r:
                if sizes:
                    break
                continue
            toks = r.group("vals").split()
            if len(toks) < len(cols):
                raise InputError(f"{name}:{n + 1}: a ramlat row with {len(toks)} values under {len(cols)} columns")
            try:
                nums = [float(t) for t in toks[:len(cols)]]
            except ValueError:
                raise InputError(f"{name}:{n + 1}: a ramlat value is not a number") from None
            sizes.append(int(r.group("n")) * UNIT[r.group("unit").lower()])
            for c, v in zip(cols, nums):
                vals[c].append(v)
        if cols and sizes:
            out.append(RamlatTable(m.group("cpu"), (m.group("core") or "").strip(), cols, sizes, vals))
    return out


def declared_caches(text: str) -> tuple[list[DeclaredCache], str]:
    """The caches lscpu declares, per instance, and a note on how far they can be trusted."""
    caches = []
    for m in LSCPU.finditer(text):
        total = float(m.group("num")) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group("unit")]
        inst = int(m.group("inst")) if m.group("inst") else 1
        name = m.group("name")
        level = int(name[1])
        kind = {"L1d": "Data", "L1i": "Instruction"}.get(name, "Unified")
        if any(c.level == level and c.type == kind for c in caches):
            continue
        caches.append(DeclaredCache(level=level, type=kind, size_bytes=int(round(total / inst))))
    models = list(dict.fromkeys(m.group(1).strip() for m in MODEL.finditer(text)))
    note = "lscpu in the same file"
    if models:
        note += f" ({', '.join(models)})"
    if len(models) > 1:
        note += "; cores of different kinds: each per-instance size averages them"
    if any(not m.group("inst") for m in LSCPU.finditer(text)):
        note += "; an older lscpu: sizes as printed (per core for L1/L2 on most kernels)"
    else:
        note += "; each size is lscpu's total over its instances"
    return caches, note


def parse(text: str, name: str = "input", column: str | None = None, table: int = 0):
    """The curve of one ramlat table (the first by default) as a LatencyCurve."""
    from memprobe.infer.curves import LatencyCurve

    found = tables(text, name)
    if not found:
        raise InputError(f"{name}: an sbc-bench result without a readable ramlat table")
    if not 0 <= table < len(found):
        raise InputError(f"{name}: no ramlat table {table} (the file has {len(found)}: "
                         f"{', '.join(t.label for t in found)})")
    t = found[table]
    col = column or DEFAULT_COLUMN
    if col not in t.values:
        raise InputError(f"{name}: ramlat has no column {col!r} (columns: {' '.join(t.columns)})")
    pairs = [(s, v) for s, v in zip(t.size_bytes, t.values[col]) if v > 0]
    declared, note = declared_caches(text)
    if len(found) > 1:
        note += f"; ramlat ran on {len(found)} cores ({', '.join(x.label for x in found)}): lscpu does not say which core has which cache"
    return LatencyCurve([float(s) for s, _ in pairs], [v for _, v in pairs], "ns",
                        f"sbc-bench ramlat on {t.label}, {col}", declared=declared, declared_note=note,
                        pages=page_pair(text, t.cpu))
