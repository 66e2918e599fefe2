"""Beside the flow: a scan beside a busy neighbour. A process burning one CPU runs through a
default scan (`--no-train`); the script prints, per stage, the share of a CPU the other
processes used as the scan recorded it, the contention warning, and every figure the
plausibility check flagged, then checks that no all-thread roof sits below one thread's.

usage: python benchmarks/contention.py [--quick]
Target: the stages beside the neighbour warned about, and no all-thread roof below one thread.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import table

from memprobe.result import Code, ScanResult

BURN = "import time\nt = time.time()\nwhile time.time() - t < 600: pass"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "scan"
        burner = subprocess.Popen([sys.executable, "-c", BURN])
        try:
            time.sleep(0.5)
            cmd = [sys.executable, "-m", "memprobe", "scan", "--no-train", "--no-progress", "--out", str(out)]
            subprocess.run(cmd + (["--quick"] if args.quick else []), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        finally:
            burner.kill()
            burner.wait()
        scan = ScanResult.load(out / "scan.json")
    cpu = scan.devices["cpu"]
    rows = [[k, f"{v:g}", f"{cpu.extra.stage_others_percent.get(k, float('nan')):g} %",
             f"{cpu.extra.stage_steal_percent.get(k, float('nan')):g} %"] for k, v in cpu.extra.stage_seconds.items()]
    print(table(["stage", "seconds", "other processes", "steal"], rows))
    for w in cpu.warnings:
        if w.code in (Code.CONTENTION, Code.IMPLAUSIBLE):
            print(f"warning ({w.code.value}): {w.text}")
    bad_roofs = 0
    for lv in cpu.levels:
        for f in lv.flags:
            print(f"flagged {lv.name} {f.figure}: {f.reason}")
        for kern, per in lv.bandwidth_gbs.items():
            one, allt = per.get("threads_1"), per.get("threads_all")
            if one and allt and allt < one / 1.1 and not lv.flagged(f"bandwidth/{kern}/threads_all"):
                bad_roofs += 1
                print(f"UNFLAGGED: {lv.name} {kern} all threads {allt:.3g} < one thread {one:.3g}")
    warned = any(w.code == Code.CONTENTION for w in cpu.warnings)
    print(f"\ncontention warned: {'yes' if warned else 'NO'}; all-thread figures below one thread left "
          f"unflagged: {bad_roofs} (target: warned, 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
