"""Beside the flow: what `memprobe infer` costs as curves grow, interpreter start included.

usage: python benchmarks/infer_cost.py

Writes simulated curves of 100, 2,000 and 20,000 points (three levels, one of each edge shape)
and times `python -m memprobe infer CURVE --json` on each, median of 5 runs, beside the bare
interpreter start (`python -c pass`, the reference measured in the same run). Targets: 100
points <= 0.5 s and 20,000 points <= 2 s, start included.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hierarchy_sim import SimLevel, latency_curve  # noqa: E402


def timed(cmd: list[str], runs: int = 5) -> float:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> int:
    levels = [SimLevel(32 << 10, 1.0, "sharp"), SimLevel(1 << 20, 4.0, "random"), SimLevel(32 << 20, 15.0, "colour")]
    start = timed([sys.executable, "-c", "pass"])
    print(f"interpreter start (reference): {start:.3f} s")
    with tempfile.TemporaryDirectory() as d:
        for n in (100, 2000, 20000):
            sizes = np.exp2(np.linspace(11, 30, n))
            lat = latency_curve(levels, 100.0, sizes, noise=0.01, seed=1)
            path = Path(d) / f"c{n}.csv"
            path.write_text("size_bytes,latency_ns\n" + "".join(f"{s:.0f},{v:.6g}\n" for s, v in zip(sizes, lat)))
            t = timed([sys.executable, "-m", "memprobe", "infer", str(path), "--json"])
            target = 0.5 if n == 100 else 2.0 if n == 20000 else None
            print(f"{n:6d} points: {t:.3f} s ({t / start:.1f}x the bare start)"
                  + (f", target <= {target} s: {'met' if t <= target else 'MISSED'}" if target else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
