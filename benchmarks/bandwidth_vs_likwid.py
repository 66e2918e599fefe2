"""Beside the flow: stage 1's bandwidth kernels beside likwid-bench's hand-written assembly at
the same working sets, one thread and all threads, at every level.

likwid-bench comes from Debian's `likwid` package (installed here when missing and apt-get can).
Kernels: memprobe copy vs likwid copy_avx512 (copy_avx without AVX-512), memprobe triad vs
stream_avx512 (stream_avx). Both count bytes as STREAM does. Working sets: --sizes (total, all
arrays), by default one inside each level of the CPU this runs on as a quick latency sweep finds
them (never sysfs) and one at memory. Rounds alternate memprobe and likwid; the ratio is the
median of the rounds' ratios. Target: memprobe / likwid >= 0.90 at every level.

    python benchmarks/bandwidth_vs_likwid.py [--sizes 24K,1M,8M,512M] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys

from _common import table


def ensure_likwid() -> str | None:
    exe = shutil.which("likwid-bench")
    if exe is None and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "likwid"], capture_output=True, check=False)
        exe = shutil.which("likwid-bench")
    return exe


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not m:
        raise SystemExit(f"bad size {text!r}")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def default_sizes() -> list[int]:
    from memprobe.infer import infer_levels
    from memprobe.probes.cpu.chase import ChaseProbe
    from memprobe.scan.plan import sweep_sizes

    sizes = sweep_sizes(4 << 10, 128 << 20, 3)
    probe = ChaseProbe(page_kind="huge")
    lat = []
    for s in sizes:
        probe.setup(s)
        lat.append(min(probe.run(3, target_ns=1e6)))
    probe.close()
    caps = [lv.size_bytes for lv in infer_levels(sizes, lat).caches]
    out, prev = [], None
    for c in caps:
        out.append(int(c / 2 if prev is None else (prev * c) ** 0.5) // 4096 * 4096)
        prev = c
    return out + [512 << 20]


def likwid_gbs(exe: str, test: str, size: int, threads: int) -> float:
    out = subprocess.run([exe, "-t", test, "-w", f"S0:{max(size >> 10, 4)}kB:{threads}"],
                         capture_output=True, text=True, check=False).stdout
    m = re.search(r"MByte/s:\s+([\d.]+)", out)
    return float(m.group(1)) / 1e3 if m else float("nan")


def memprobe_gbs(kernel: str, size: int, threads: int) -> float:
    from memprobe.probes.cpu.bandwidth import BandwidthProbe, bandwidth_gbs, kernel_by_name

    k = kernel_by_name(kernel)
    # pages as the scan has them: memory's arrays on 4 KiB pages, the caches' on huge pages
    p = BandwidthProbe(k, page_kind="4k" if size >= (64 << 20) else "huge")
    try:
        p.setup(size)
        ns = p.run(5, threads=threads, target_ns=2e6 if size < (64 << 20) else 1.0)
        p.verify()
        return max(bandwidth_gbs(k, p.n_elements, x) for x in ns)
    finally:
        p.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    exe = ensure_likwid()
    if exe is None:
        print("likwid-bench not found and could not be installed (Debian: apt-get install likwid)")
        return 1
    from memprobe.probes.cpu.bandwidth import max_threads

    flags = open("/proc/cpuinfo").read()
    wide = "avx512f" in flags
    tests = {"copy": "copy_avx512" if wide else "copy_avx", "triad": "stream_avx512" if wide else "stream_avx"}
    sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else default_sizes()
    rows, low = [], 0
    for size in sizes:
        for kernel, test in tests.items():
            for threads in sorted({1, max_threads()}):
                ratios, mp, lk = [], [], []
                for _ in range(args.rounds):
                    a = memprobe_gbs(kernel, size, threads)
                    b = likwid_gbs(exe, test, size, threads)
                    mp.append(a)
                    lk.append(b)
                    ratios.append(a / b)
                r = statistics.median(ratios)
                low += r < 0.90
                rows.append([f"{size >> 10} KiB", kernel, test, str(threads), f"{statistics.median(mp):.1f}",
                             f"{statistics.median(lk):.1f}", f"{r:.2f}", "ok" if r >= 0.90 else "LOW"])
    print(table(["working set", "kernel", "likwid test", "thr", "memprobe GB/s", "likwid GB/s", "ratio", ">= 0.90"],
                rows))
    print(f"\n{len(rows) - low}/{len(rows)} points at >= 0.90 of likwid-bench")
    return 0


if __name__ == "__main__":
    sys.exit(main())
