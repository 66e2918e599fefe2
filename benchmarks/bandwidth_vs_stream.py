"""Beside the flow: stage 1's Numba bandwidth kernels beside a C/OpenMP STREAM of our own, at
the same working sets, so the ceilings the scan reports are what compiled C gets.

Sizes: one working set centred in each cache level, the levels taken from a quick latency sweep
inferred here (never from sysfs), and memory's by STREAM's rule as the scan sizes it (three
arrays, each 4x the largest cache measured or declared), or given with --sizes (bytes, KiB/MiB
suffixes allowed). Both sides: one thread and all threads; --rounds rounds alternate Numba and C (each the median
of --runs repetitions) and the ratio is the median of the rounds' ratios.
Targets: Numba/C >= 0.95 for copy and triad at memory size, >= 0.90 in the caches.

At memory size the Numba side is the better of the kernel and its streaming-store twin
(`copy_nt`, `triad_nt`: non-temporal stores, as the scan also measures there), because gcc turns
the C copy loop into glibc's memcpy, which switches to non-temporal stores for large copies;
both Numba figures are printed.

    python benchmarks/bandwidth_vs_stream.py [--sizes 16K,128K,2M,256M] [--runs 5] [--rounds 5] [--kernels copy,triad]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "_build"


def build_stream() -> Path:
    BUILD.mkdir(exist_ok=True)
    exe = BUILD / "stream"
    src = HERE / "c" / "stream.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", str(src), "-o", str(exe)], check=True)
    return exe


def parse_size(text: str) -> int:
    t = text.strip().upper().rstrip("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def inferred_sizes() -> list[tuple[str, int]]:
    """A quick huge-page latency sweep, inferred into levels; one working set per level."""
    from memprobe.infer import infer_levels
    from memprobe.probes.cpu.chase import ChaseProbe
    from memprobe.result import Level
    from memprobe.scan.ceilings import level_sizes_bytes
    from memprobe.scan.plan import sweep_sizes

    probe = ChaseProbe()
    xs, ys = [], []
    for s in sweep_sizes(4 << 10, 256 << 20, 3):
        probe.setup(s)
        xs.append(s)
        ys.append(min(probe.run(3, min_hops=20_000, target_ns=1e6)))
    probe.close()
    h = infer_levels(xs, ys)
    levels = [Level(lv.name, lv.size_bytes, lv.latency, None) for lv in h.levels]
    out = level_sizes_bytes(levels)
    # memory as the scan sizes it: STREAM's rule, each array 4x the largest cache measured or
    # declared (triad's three arrays; copy's two arrays are then 1.5x that each)
    import psutil

    from memprobe.platform.cpu import declared_cpu
    from memprobe.scan.ceilings import stream_array_bytes

    declared = max((c.size_bytes or 0 for c in declared_cpu(with_cpuinfo=False).data_caches()), default=0)
    arr, _capped = stream_array_bytes(levels, declared, psutil.virtual_memory().available)
    out["memory"] = 3 * arr
    return list(out.items())


def c_gbs(exe: Path, kernel: str, size: int, threads: int, reps: int) -> float:
    from memprobe.probes.cpu.bandwidth import bandwidth_gbs, kernel_by_name

    env = dict(os.environ, OMP_PROC_BIND="false")
    out = subprocess.run([str(exe), kernel, str(size), str(threads), str(reps), "1e6"],
                         capture_output=True, text=True, check=True, env=env).stdout.split("\n")
    n = int(next(line.split()[1] for line in out if line.startswith("n_elements")))
    ns = [float(x) for x in out if x and not x.startswith("n_")]
    return statistics.median(bandwidth_gbs(kernel_by_name(kernel), n, x) for x in ns)


def numba_gbs(kernel: str, size: int, threads: int, reps: int, page_kind: str = "huge") -> float:
    from memprobe.probes.cpu.bandwidth import BandwidthProbe, bandwidth_gbs

    p = BandwidthProbe(kernel, page_kind=page_kind)
    try:
        p.setup(size)
        ns = p.run(reps, threads=threads, target_ns=1e6)
        p.verify()
        return statistics.median(bandwidth_gbs(p.kernel, p.n_elements, x) for x in ns)
    finally:
        p.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", help="comma-separated working sets (e.g. 16K,128K,2M,256M)")
    ap.add_argument("--runs", type=int, default=5, help="repetitions per side in a round (median)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating Numba/C rounds per point")
    ap.add_argument("--kernels", default="copy,triad")
    args = ap.parse_args(argv)
    from memprobe.probes.cpu.bandwidth import KERNEL_NAMES, max_threads

    exe = build_stream()
    if args.sizes:
        given = [parse_size(s) for s in args.sizes.split(",")]
        # the largest given size stands for memory (its target is the stricter one)
        sizes = [(f"#{i + 1}" if i < len(given) - 1 else "memory", s) for i, s in enumerate(sorted(given))]
    else:
        print("inferring levels from a quick latency sweep...", file=sys.stderr)
        sizes = inferred_sizes()
    n_all = max_threads()
    print(f"{'level':8} {'size':>10} {'kernel':6} {'thr':>3} {'numba GB/s':>11} {'(NT)':>6} {'C GB/s':>9} {'ratio':>6}  target")
    worst = {}
    for label, size in sizes:
        target = 0.95 if label == "memory" else 0.90
        # pages as the scan has them: memory's arrays on 4 KiB pages (as STREAM's own), the
        # caches' on huge pages
        page = "4k" if label == "memory" else "huge"
        for kernel in args.kernels.split(","):
            for threads in (1, n_all):
                # rounds alternate the two sides, so a neighbour's burst hits both alike; the
                # ratio is the median of the rounds' ratios
                nbs, nts, ccs, ratios = [], [], [], []
                for _ in range(args.rounds):
                    nb = numba_gbs(kernel, size, threads, args.runs, page)
                    nt = (numba_gbs(f"{kernel}_nt", size, threads, args.runs, page)
                          if label == "memory" and f"{kernel}_nt" in KERNEL_NAMES else None)
                    cc = c_gbs(exe, kernel, size, threads, args.runs)
                    nbs.append(nb)
                    ccs.append(cc)
                    if nt:
                        nts.append(nt)
                    ratios.append(max(nb, nt or 0.0) / cc if cc else float("nan"))
                ratio = statistics.median(ratios)
                flag = "ok" if ratio >= target else "LOW"
                ntv = f"{statistics.median(nts):>6.1f}" if nts else f"{'':>6}"
                print(f"{label:8} {size / 1024:>8.0f}Ki {kernel:6} {threads:>3} {statistics.median(nbs):>11.1f} "
                      f"{ntv} {statistics.median(ccs):>9.1f} {ratio:>6.2f}  >={target} {flag}", flush=True)
                worst[(label, kernel, threads)] = ratio
    low = [k for k, r in worst.items() if r < (0.95 if k[0] == "memory" else 0.90)]
    print(f"\n{len(worst) - len(low)}/{len(worst)} points meet their target"
          + (" (a shared, noisy machine: rerun quietly before reading much into a miss)" if low else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
