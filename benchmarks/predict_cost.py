"""How long `memprobe predict` takes on the zoo's GPT-2 (4 layers, width 256, sequence 128,
batch 16, AdamW, one thread), as a user runs it: with a fresh rate cache (every distinct op
replayed warm and cold) and with a warm one (the rates read back). Targets: 60 s and 10 s.
Beside them, in the same run, `predict --on` of the same step (capture and predictor, nothing
replayed): the floor every prediction pays, so the ratio says what the replays cost on this
machine whatever its speed today.

    python benchmarks/predict_cost.py --scan DIR/scan.json [--runs 2]

Each figure is the median of `--runs` whole processes (wall clock, the interpreter's start in).
The rate cache lives in a temporary folder (XDG_CACHE_HOME), never the user's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = str(Path(__file__).resolve().parent / "predict_zoo.py") + ":gpt2"
TARGET_FRESH_S, TARGET_WARM_S = 60.0, 10.0


def _run(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "memprobe", "predict", SPEC, *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scan", required=True, help="a scan.json of this machine")
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    fresh, warm, floor = [], [], []
    for _ in range(a.runs):
        home = tempfile.mkdtemp(prefix="memprobe-cost-")
        env = {**os.environ, "XDG_CACHE_HOME": home}
        try:
            fresh.append(_run(["--scan", a.scan], env))
            warm.append(_run(["--scan", a.scan], env))
            floor.append(_run(["--on", a.scan], env))
        finally:
            shutil.rmtree(home, ignore_errors=True)
    f, w, o = statistics.median(fresh), statistics.median(warm), statistics.median(floor)
    print(f"fresh rate cache  {f:6.1f} s  (runs {', '.join(f'{x:.1f}' for x in fresh)})  target {TARGET_FRESH_S:.0f} s: "
          f"{f / TARGET_FRESH_S:.2f}x")
    print(f"warm rate cache   {w:6.1f} s  (runs {', '.join(f'{x:.1f}' for x in warm)})  target {TARGET_WARM_S:.0f} s: "
          f"{w / TARGET_WARM_S:.2f}x")
    print(f"--on, no replays  {o:6.1f} s  fresh / --on {f / o:.1f}x, warm / --on {w / o:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
