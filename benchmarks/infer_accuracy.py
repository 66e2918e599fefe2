"""Beside the flow: score stage 3 (level inference) on a folder of published latency curves,
so the rules are checked on machines other than the one at hand.

usage: python benchmarks/infer_accuracy.py DIR    (e.g. ../shared/curves)

DIR holds CSV curves (size_bytes + latency_ns or latency_cycles) and, optionally, sources.json
with each curve's `declared_caches` (free text such as "64 KiB per core", "50 MB total"). For each
curve the table shows the inferred levels beside the declared caches they match, the ratio
inferred/declared, and whether it is within 25 % or inside the bracket of the two sweep points
around the boundary. Declared sizes are read here only to score; inference never sees them.

Scoring rules:
- "MB"/"KB" in a cache's declared size are binary (JEDEC 100B.01's use for memory: a "50 MB"
  H100 L2 is 52,428,800 bytes, the CUDA attribute's value; cache arrays are built in powers of two).
- Declared and inferred caches are paired in order (nearest first on both sides): the pairing
  that leaves the fewest declared caches unpaired, and among those the least total log-size
  error. No pair is made across more than MAX_PAIR_OCT octaves; an inferred cache left over is
  listed as "(extra)".
- A declared cache as large as the curve's largest working set or larger cannot show its edge
  on it: it is listed as "beyond the curve" and left out of the score.
- *Found* (issue 26's score, also used by infer_published.py): a declared cache is found when
  an inferred level's size is within 25 % of it, or an interval no wider than one octave holds
  it; each inferred level finds one declared cache at most, in order (`pair_found`). The last
  line counts the curves with every declared cache found.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from pathlib import Path

import numpy as np

from _common import table

from memprobe.infer import infer_levels
from memprobe.infer.curves import read_curve_file

SKIP_KEYS = re.compile(r"DRAM|README|lscpu|identification|LDS|MALL", re.IGNORECASE)
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|KB|MB|GB|kB)")
MULT = {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
MAX_INTERVAL_OCT = 2.0  # an interval wider than this says too little on a fine curve
MAX_PAIR_OCT = 2.0  # a declared cache further than this from every inferred one stays unpaired


FOUND_RATIO = 0.25  # within 25 % of the declared size
FOUND_INTERVAL_OCT = 1.0  # or an interval this narrow (octaves) holds it


def found(size_bytes: int, interval: tuple[int, int] | None, declared: int) -> bool:
    """Issue 26's rule: within 25 %, or inside an interval no wider than one octave."""
    if abs(size_bytes / declared - 1) <= FOUND_RATIO:
        return True
    if interval is None:
        return False
    lo, hi = interval
    return lo <= declared <= hi and math.log2(hi / lo) <= FOUND_INTERVAL_OCT + 1e-6


def pair_found(declared: list[int], caches) -> dict[int, int]:
    """Order-preserving pairing {declared index: inferred index} with the most declared caches
    found (`found`), and among those the least total |log2 size ratio|."""
    def pair(i: int, j: int, score: tuple) -> tuple | None:
        c = caches[j]
        if not found(c.size_bytes, c.size_range_bytes, declared[i]):
            return None
        return score[0] - 1, score[1] + abs(math.log2(c.size_bytes / declared[i]))

    return _align(len(declared), len(caches), lambda score: score, pair)


def _align(n: int, m: int, skip_declared, pair) -> dict[int, int]:
    """The order-preserving alignment of n declared caches with m inferred levels that
    minimises a score (a tuple, from (0, 0.0)): `skip_declared(score)` leaves a declared cache
    unpaired, `pair(i, j, score)` pairs declared i with inferred j (None where not allowed);
    leaving an inferred level unpaired costs nothing."""
    best = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]
    move = [[""] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 and j == 0:
                continue
            opts = []
            if i > 0:
                opts.append((skip_declared(best[i - 1][j]), "skip_declared"))
            if j > 0:
                opts.append((best[i][j - 1], "skip_inferred"))
            if i > 0 and j > 0:
                paired = pair(i - 1, j - 1, best[i - 1][j - 1])
                if paired is not None:
                    opts.append((paired, "pair"))
            best[i][j], move[i][j] = min(opts, key=lambda o: o[0])
    return _backtrack(move, n, m)


def _backtrack(move: list[list[str]], n: int, m: int) -> dict[int, int]:
    """The alignment's pairs {declared index: inferred index}, read back from its moves."""
    pairs, i, j = {}, n, m
    while i > 0 or j > 0:
        step = move[i][j]
        if step == "pair":
            pairs[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif step == "skip_declared":
            i -= 1
        else:
            j -= 1
    return pairs


def declared_sizes(info: dict) -> list[tuple[str, int]]:
    out = []
    for key, text in (info.get("declared_caches") or {}).items():
        if SKIP_KEYS.search(key):
            continue
        if isinstance(text, int):  # bytes already (benchmarks/data/published)
            out.append((key, text))
            continue
        m = SIZE.search(str(text))
        if m and float(m.group(1)) > 0:
            unit = m.group(2).upper()
            out.append((key, int(float(m.group(1)) * MULT[unit])))
    return sorted(out, key=lambda kv: kv[1])


def pair_in_order(declared: list[int], inferred: list[int]) -> dict[int, int]:
    """Order-preserving pairing {declared index: inferred index} with the least total
    |log2(inferred/declared)|; pairs further apart than MAX_PAIR_OCT are not made.

    Order-preserving because both lists are nearest-first: a TLB step read as an extra level
    must not pull the next cache's size onto the wrong declared level.
    """
    def pair(i: int, j: int, score: tuple) -> tuple | None:
        err = abs(math.log2(inferred[j] / declared[i]))
        return (score[0], score[1] + err) if err <= MAX_PAIR_OCT else None

    # the score: (unpaired declared count, total error)
    return _align(len(declared), len(inferred), lambda score: (score[0] + 1, score[1]), pair)


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
    rows, within, near, total = [], 0, 0, 0
    n_found = curves_all = n_curves = 0
    for path in sorted(folder.glob("*.csv")):
        curve = read_curve_file(path)
        h = infer_levels(curve.size_bytes, curve.latency, curve.unit, samples=curve.samples)
        declared = declared_sizes(sources.get(path.stem, {}))
        caches = h.caches
        largest = max(curve.size_bytes)
        ppo = 1.0 / statistics.median(np.diff(np.log2(sorted(set(curve.size_bytes)))))
        seen = [(key, size) for key, size in declared if size < largest]
        pairs = pair_in_order([size for _, size in seen], [c.size_bytes for c in caches])
        used = set(pairs.values())
        got = pair_found([size for _, size in seen], caches)
        n_found += len(got)
        n_curves += 1
        curves_all += len(got) == len(seen)
        for d, (key, size) in enumerate(seen):
            total += 1
            if d not in pairs:
                rows.append([path.stem, key, fmt(size), "(none)", "-", "no", "-", "-"])
                continue
            c = caches[pairs[d]]
            ratio = c.size_bytes / size
            lo, hi = c.size_range_bytes or (0, 0)
            # right: the declared size inside the reported interval, and the interval no wider
            # than MAX_INTERVAL_OCT on a curve of at least 4 points per octave
            wide = ppo >= 4 and hi > 0 and math.log2(hi / lo) > MAX_INTERVAL_OCT
            ok = lo <= size <= hi and not wide
            within += ok
            near += abs(ratio - 1) <= 0.25
            rows.append([path.stem, key, fmt(size), f"{c.name} {fmt(c.size_bytes)}", f"{ratio:.2f}",
                         "yes" if ok else ("no (wide)" if wide else "no"), f"{fmt(lo)}-{fmt(hi)}",
                         c.edge or "-"])
        for key, size in declared:
            if size >= largest:
                rows.append([path.stem, key, fmt(size), "-", "-", "-",
                             f"beyond the curve (ends at {fmt(largest)})", "-"])
        for i, c in enumerate(caches):
            if i not in used:
                rows.append([path.stem, "(extra)", "-", f"{c.name} {fmt(c.size_bytes)}", "-", "-",
                             "TLB step or unlisted level" if declared else "", c.edge or "-"])
        rows.append([path.stem, "memory", "-", f"{h.levels[-1].latency:.3g} {h.unit}", "-", "-",
                     "reached" if h.memory_reached else "NOT reached", "-"])
    print(table(["curve", "declared", "size", "inferred", "ratio", "right", "interval / note", "edge"], rows))
    if total:
        print(f"\n{within}/{total} declared caches inside the reported interval (an interval wider than "
              f"{MAX_INTERVAL_OCT:g} octaves on a curve of 4+ points per octave counts as wrong); "
              f"{near}/{total} within 25 % of the inferred size; caches beyond a curve's largest size "
              f"are not counted")
        print(f"found (within 25 % or inside a one-octave interval): {n_found}/{total} declared caches; "
              f"{curves_all}/{n_curves} curves with every declared cache found")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
