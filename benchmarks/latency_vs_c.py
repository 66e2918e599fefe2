"""Beside the flow: checks that stage 1's chase probe costs what a C pointer chase (gcc -O2)
costs, same layout and sizes, in one run.

Target: Numba/C latency ratio <= 1.05 at the L1, L2 and memory plateaus.
Sizes come from this run's own quick latency sweep and inference (never from sysfs): the middle
of the L1 and L2 plateaus and 8x the last cache (at least 256 MiB) for memory. C and Numba runs
alternate, ROUNDS times, and the median of each side is compared (the machine is shared).

usage: python benchmarks/latency_vs_c.py [--rounds N]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys

from _common import build_c, median, table

from memprobe.infer import infer_levels
from memprobe.probes.cpu.chase import ChaseProbe
from memprobe.scan.plan import sweep_sizes

HOPS_TARGET_NS = 20e6  # per repetition


def plateau_sizes() -> dict[str, int]:
    probe = ChaseProbe()
    sizes = sweep_sizes(4096, 256 << 20, 2)
    lat = []
    for s in sizes:
        probe.setup(s)
        lat.append(min(probe.run(3)))
    probe.close()
    h = infer_levels(sizes, lat)
    caches = h.caches
    l1 = caches[0].size_bytes
    l2 = caches[1].size_bytes if len(caches) > 1 else 8 * l1
    return {"L1": l1 // 2, "L2": int(math.sqrt(l1 * l2)), "memory": max(256 << 20, 8 * caches[-1].size_bytes)}


def numba_ns(size: int, hops: int, reps: int, seed: int) -> float:
    p = ChaseProbe(seed=seed)
    p.setup(size)
    r = p.run(reps, min_hops=hops, target_ns=0)
    p.close()
    return min(r)


def c_ns(exe, size: int, hops: int, reps: int, seed: int) -> float:
    out = subprocess.run([str(exe), str(size), "64", str(hops), str(reps), str(seed)],
                         capture_output=True, text=True, check=True).stdout
    return min(float(x) for x in out.split())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    exe = build_c("chase", ["-O2"])
    sizes = plateau_sizes()
    rows, worst = [], 0.0
    for name, size in sizes.items():
        rough = numba_ns(size, 100_000, 1, 1)
        hops = int(max(100_000, HOPS_TARGET_NS / rough)) // 8 * 8
        nb, cc = [], []
        for r in range(args.rounds):
            cc.append(c_ns(exe, size, hops, 3, 1000 + r))
            nb.append(numba_ns(size, hops, 3, 1000 + r))
        ratio = median(nb) / median(cc)
        worst = max(worst, ratio)
        rows.append([name, f"{size / 1024:.0f} KiB", f"{median(nb):.3f}", f"{median(cc):.3f}", f"{ratio:.3f}",
                     "ok" if ratio <= 1.05 else "ABOVE 1.05"])
    print(table(["plateau", "size", "numba ns", "C ns", "numba/C", "target <= 1.05"], rows))
    print(f"worst ratio {worst:.3f} over {args.rounds} alternating rounds (median of best-of-3 each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
