"""Beside the flow: stage 1's FMA kernel against the theoretical peak, cores x measured clock x
FMA FLOP/cycle of the ISA (declared from the CPU flags). Target: >= 85 %. Prints the hot loop's
FMA instructions too.

    python benchmarks/fma_peak.py [--runs 7]
"""

from __future__ import annotations

import argparse
import re
import statistics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)
    from memprobe.platform.cpu import fma_flops_per_cycle, read_cpuinfo
    from memprobe.probes.cpu.bandwidth import max_threads
    from memprobe.probes.cpu.chase import clock_samples
    from memprobe.probes.cpu.compute import FmaProbe, fma_asm, gflops

    clock = statistics.median(clock_samples(7))
    flags = read_cpuinfo().get("flags") or []
    cores = max_threads()
    print(f"measured clock {clock:.2f} GHz, {cores} cores")
    print(f"{'dtype':8} {'thr':>3} {'GFLOP/s':>9} {'peak':>8} {'%':>6}  target >= 85 %")
    for dtype, nbytes in (("float32", 4), ("float64", 8)):
        fpc = fma_flops_per_cycle(flags, nbytes)
        for threads in (1, cores):
            p = FmaProbe(dtype)
            p.setup(threads)
            ns = p.run(args.runs)
            p.verify()
            best = max(gflops(p.flops_per_run, x) for x in ns)
            peak = clock * threads * fpc if fpc else float("nan")
            pct = 100 * best / peak
            print(f"{dtype:8} {threads:>3} {best:>9.1f} {peak:>8.1f} {pct:>5.0f}%  {'ok' if pct >= 85 else 'LOW'}")
        fmas = [ln.strip() for ln in fma_asm(dtype).splitlines() if re.search(r"vfmadd", ln)]
        print(f"  hot loop: {len(fmas)} x {fmas[0] if fmas else 'no vfmadd!'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
