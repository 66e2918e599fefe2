"""Beside the flow: the wall time of `memprobe scan --quick` (training study and report
included), as it runs here and with STREAM's rule sized for another last cache, alternating in
one run. Memory's bandwidth arrays are each 4x the largest cache, measured or declared (issue
#15): a host that declares a 260 MiB L3 makes the quick scan touch and pass 3.1 GiB, one with
32 MiB 384 MiB. The second scan runs the same code with only that planning input changed, so
the ratio shows what the rule costs on this machine.

Target: --quick <= 10 s.

usage: python benchmarks/quick_scan_time.py [--runs N] [--largest-cache SIZE]   (default 3, 32M)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import table

# the quick scan in a fresh process, with STREAM's rule given `largest` bytes as the largest
# declared cache (planning only: the levels, the curves and the rest of the scan are this machine's)
SIZED = """
import sys
from memprobe.scan import ceilings
real = ceilings.stream_array_bytes
ceilings.stream_array_bytes = lambda levels, declared, free: real(levels, {largest}, free)
from memprobe.cli import main
sys.exit(main(["scan", "--quick", "--no-progress", "--out", {out!r}]))
"""


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def one(out: Path, largest: int | None) -> tuple[float, dict]:
    cmd = ([sys.executable, "-m", "memprobe", "scan", "--quick", "--no-progress", "--out", str(out)]
           if largest is None else [sys.executable, "-c", SIZED.format(largest=largest, out=str(out))])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    return wall, json.loads((out / "scan.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--largest-cache", default="32M", help="the largest cache STREAM's rule sizes for (default 32M)")
    args = ap.parse_args()
    largest = parse_size(args.largest_cache)
    rows, walls = [], {"here": [], "sized": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.runs):
            for key, size in (("here", None), ("sized", largest)):
                wall, d = one(Path(tmp) / f"{key}{r}", size)
                walls[key].append(wall)
                cpu = d["cpu"]
                mem = next(lv for lv in cpu["bandwidth"]["levels"] if lv.get("array_bytes"))
                st = cpu["extra"]["stage_seconds"]
                rows.append([r + 1, key, f"{mem['array_bytes'] / 2**20:.0f}", f"{wall:.2f}",
                             f"{st.get('bandwidth', 0):.2f}", f"{(d.get('training') or {}).get('summary', {}).get('study_s', 0):.2f}",
                             f"{sum(st.values()):.2f}"])
    print(table(["run", "rule sized for", "array MiB", "wall s", "bandwidth s", "study s", "stages s"], rows))
    here, sized = statistics.median(walls["here"]), statistics.median(walls["sized"])
    print(f"\nmedian wall: {here:.2f} s here, {sized:.2f} s with STREAM's rule for a "
          f"{args.largest_cache} cache (ratio {here / sized:.2f}); target <= 10 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
