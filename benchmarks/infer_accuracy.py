"""Score level inference on a folder of published latency curves.

usage: python benchmarks/infer_accuracy.py DIR    (e.g. ../shared/curves)

DIR holds CSV curves (size_bytes + latency_ns or latency_cycles) and, optionally, sources.json
with each curve's `declared_caches` (free text such as "64 KiB per core", "50 MB total"). For each
curve the table shows the inferred levels beside the declared caches they match (nearest in log
size), the ratio inferred/declared, and whether it is within 25 % and inside the bracket of the
two sweep points around the boundary. Declared sizes are read here only to score; inference
never sees them.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from _common import table

from memprobe.infer import infer_levels
from memprobe.infer.curves import read_curve_file

SKIP_KEYS = re.compile(r"DRAM|README|lscpu|identification|LDS|MALL", re.IGNORECASE)
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|KB|MB|GB|kB)")
MULT = {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "KB": 1000, "MB": 1000**2, "GB": 1000**3}


def declared_sizes(info: dict) -> list[tuple[str, int]]:
    out = []
    for key, text in (info.get("declared_caches") or {}).items():
        if SKIP_KEYS.search(key):
            continue
        m = SIZE.search(str(text))
        if m:
            unit = m.group(2).upper()
            # vendors write "50 MB" for 50 MiB-ish caches; either reading is within 5 %
            out.append((key, int(float(m.group(1)) * MULT[unit])))
    return sorted(out, key=lambda kv: kv[1])


def fmt(b: float | None) -> str:
    if b is None:
        return "-"
    for u, m in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if b >= m:
            return f"{b / m:.3g}{u}"
    return f"{int(b)}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    folder = Path(argv[0])
    sources = {}
    if (folder / "sources.json").exists():
        sources = json.loads((folder / "sources.json").read_text()).get("curves", {})
    rows, within, total = [], 0, 0
    for path in sorted(folder.glob("*.csv")):
        curve = read_curve_file(path)
        h = infer_levels(curve.size_bytes, curve.latency, curve.unit)
        declared = declared_sizes(sources.get(path.stem, {}))
        caches = h.caches
        used = set()
        for key, size in declared:
            # nearest inferred cache in log size that is not taken yet
            cands = [(abs(math.log2(c.size_bytes / size)), i) for i, c in enumerate(caches) if i not in used]
            if not cands:
                rows.append([path.stem, key, fmt(size), "(none)", "-", "-", "-"])
                total += 1
                continue
            _, i = min(cands)
            used.add(i)
            c = caches[i]
            ratio = c.size_bytes / size
            lo, hi = c.size_range_bytes or (0, 0)
            # right: within 25 %, or inside the two sweep points around the boundary (a curve
            # with one point per octave cannot place a step more finely than its octave)
            ok = abs(ratio - 1) <= 0.25 or lo <= size <= hi
            within += ok
            total += 1
            rows.append([path.stem, key, fmt(size), f"{c.name} {fmt(c.size_bytes)}", f"{ratio:.2f}",
                         "yes" if ok else "no", f"{fmt(lo)}-{fmt(hi)}"])
        for i, c in enumerate(caches):
            if i not in used:
                rows.append([path.stem, "(extra)", "-", f"{c.name} {fmt(c.size_bytes)}", "-", "-",
                             "TLB step or unlisted level" if declared else ""])
        rows.append([path.stem, "memory", "-", f"{h.levels[-1].latency:.3g} {h.unit}", "-", "-",
                     "reached" if h.memory_reached else "NOT reached"])
    print(table(["curve", "declared", "size", "inferred", "ratio", "right", "bracket / note"], rows))
    if total:
        print(f"\n{within}/{total} declared caches inferred right: within 25 %, or inside the bracket "
              f"of sweep points around the boundary ({within / total:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
