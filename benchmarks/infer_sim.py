"""Beside the flow: score stage 3 (level inference) on simulated hierarchies of every edge shape
(sharp, random replacement simulated access by access, page colours, free logistic), mixed
within one machine, at 4 points per octave and 0-3 % noise.

usage: python benchmarks/infer_sim.py [N] [--per-octave K]
       (default 200 hierarchies at 4 points per octave, a fixed seed; K = 1 is lmbench's and
       sbc-bench's density)

Prints the share with the level count right, the share of caches whose size is within 15 % of
the truth, the same for random-replacement caches alone, the share whose truth lies inside the
reported interval, and the median interval width in octaves.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hierarchy_sim import geometric_sizes, latency_curve, random_hierarchy, visible  # noqa: E402

from memprobe.infer import infer_levels  # noqa: E402


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="level inference on simulated hierarchies")
    ap.add_argument("n", nargs="?", type=int, default=200, help="hierarchies to draw (default 200)")
    ap.add_argument("--per-octave", type=int, default=4, help="sweep points per octave (default 4)")
    args = ap.parse_args(argv)
    n, per_octave = args.n, args.per_octave
    rng = np.random.default_rng(2026)
    count_ok = drawn = 0
    within, inside, widths = [], [], []
    per_shape: dict[str, list[bool]] = {}
    per_shape_in: dict[str, list[bool]] = {}
    misses = []
    while drawn < n:
        levels, mem, kind = random_hierarchy(rng)
        sizes = geometric_sizes(2 << 10, levels[-1].size_bytes * 16, per_octave)
        if not visible(levels, mem, sizes):
            continue
        drawn += 1
        noise = float(rng.uniform(0, 0.03))
        h = infer_levels(sizes, latency_curve(levels, mem, sizes, noise=noise, seed=int(rng.integers(1 << 30))))
        if len(h.caches) != len(levels):
            misses.append((kind, [(lv.edge, lv.size_bytes) for lv in levels], [c.size_bytes for c in h.caches]))
            continue
        count_ok += 1
        for got, want in zip(h.caches, levels):
            ok = abs(got.size_bytes / want.size_bytes - 1) <= 0.15
            lo, hi = got.size_range_bytes
            within.append(ok)
            inside.append(lo <= want.size_bytes <= hi)
            widths.append(math.log2(hi / lo))
            per_shape.setdefault(want.edge, []).append(ok)
            per_shape_in.setdefault(want.edge, []).append(lo <= want.size_bytes <= hi)
    print(f"{drawn} hierarchies ({per_octave} points per octave, 0-3 % noise, shapes mixed within each)")
    print(f"level count right: {count_ok}/{drawn} ({count_ok / drawn:.1%})   target >= 97 %")
    print(f"sizes within 15 %: {sum(within)}/{len(within)} ({sum(within) / len(within):.1%})   target >= 95 %")
    for shape, oks in sorted(per_shape.items()):
        ins = per_shape_in[shape]
        print(f"  {shape:9s} within 15 %: {sum(oks)}/{len(oks)} ({sum(oks) / len(oks):.1%}); "
              f"inside the interval {sum(ins)}/{len(ins)}")
    print(f"truth inside the reported interval: {sum(inside)}/{len(inside)} ({sum(inside) / len(inside):.1%}); "
          f"median interval {statistics.median(widths):.2f} octaves, widest {max(widths):.2f}")
    for m in misses[:8]:
        print("count missed:", m)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
