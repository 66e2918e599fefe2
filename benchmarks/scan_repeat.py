"""Beside the flow: repeated CPU scans, end to end (probe to result), for their time and how
steady the inferred levels are. It prints the time of the latency part (the first run with an
empty Numba cache, so JIT included) against its budget, the inferred L1/L2/L3 of each run
beside the declared sizes, and each level's sharing verdict with its capacity alone and under
the other cores' load.

Targets: latency part of a default scan <= 30 s, --quick <= 10 s; inferred L1 and L2 within
20 % of the declared sizes and the L3 (a VM's slice) found as its own level in every
scan of a batch (declared sizes are read only to score);
memory use within 4x the largest working set -- the peak RSS of each scan process
(wait4 on each finished scan) against the largest size any curve of that scan used.

usage: python benchmarks/scan_repeat.py [--runs N] [--quick] [--full] [--keep DIR]
  --full times the whole scan (every stage, training study excluded) against 60 s instead.
  --keep DIR keeps each run's scan.json and curves.csv under DIR/scanN.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import table

LATENCY_STAGES = ("declared", "clock", "line", "latency", "latency_4k", "latency_recheck", "levels",
                  "memory_side")


def _sharing(cpu: dict) -> str:
    """Each level's sharing verdict with its capacity alone and under the other cores' load."""
    out = []
    for name, e in cpu["extra"].get("sharing", {}).items():
        a, b = e.get("capacity_alone_bytes"), e.get("capacity_loaded_bytes")
        caps = f" {a / 2**20:.2g}->{b / 2**20:.2g}M" if a and b else ""
        out.append(f"{name} {(e.get('verdict') or '-')[:5]}{caps}")
    return ", ".join(out) or "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--keep", type=Path, help="keep each run's output under this folder")
    args = ap.parse_args()
    budget = 60.0 if args.full else (10.0 if args.quick else 30.0)
    rows, ok_l1, ok_l2, ok_l3 = [], 0, 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp) / "numba-cache"))  # run 1: cold JIT
        for run in range(args.runs):
            out = (args.keep or Path(tmp)) / f"scan{run}"
            cmd = [sys.executable, "-m", "memprobe", "scan", "--no-train", "--no-progress", "--out", str(out)]
            if args.quick:
                cmd.append("--quick")
            # this scan's own peak RSS: wait4 on its pid (RUSAGE_CHILDREN would carry the
            # largest earlier scan's peak into every later row)
            with tempfile.TemporaryFile("w+") as err:
                p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
                _, status, usage = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                peak_rss = usage.ru_maxrss * 1024
                if p.returncode != 0:
                    err.seek(0)
                    print(err.read(), file=sys.stderr)
                    return 1
            d = json.loads((out / "scan.json").read_text())
            cpu = d["cpu"]
            secs = cpu["extra"]["stage_seconds"]  # scan.json memprobe/2
            t = sum(v for k, v in secs.items() if args.full or k in LATENCY_STAGES)
            # the host's steal time during the latency stages: the condition each row ran in
            steal = cpu["extra"].get("stage_steal_percent", {})
            steal_max = max((v for k, v in steal.items() if k in LATENCY_STAGES), default=None)
            declared = {f"L{c['level']}": c["size_bytes"] for c in cpu["declared"]["caches"]
                        if c["type"] != "Instruction"}
            sizes = {lv["name"]: lv["size_bytes"] for lv in cpu["levels"]}
            largest_ws = max(pt["x"] for c in cpu["curves"] if c["x_name"] == "size_bytes" for pt in c["points"])
            r1 = sizes.get("L1", 0) / declared["L1"] if declared.get("L1") else float("nan")
            r2 = sizes.get("L2", 0) / declared["L2"] if declared.get("L2") else float("nan")
            ok_l1 += abs(r1 - 1) <= 0.20
            ok_l2 += abs(r2 - 1) <= 0.20
            ok_l3 += len(cpu["levels"]) - 1 >= 3
            rows.append([str(run + 1) + (" (cold JIT)" if run == 0 else ""), f"{t:.1f}", f"{t / budget:.2f}",
                         f"{sizes.get('L1', 0) / 1024:.0f} KiB ({r1:.2f})", f"{sizes.get('L2', 0) / 1024:.0f} KiB ({r2:.2f})",
                         f"{(sizes.get('L3') or 0) / 2**20:.1f} MiB", str(len(cpu["levels"]) - 1),
                         f"{cpu['levels'][-1]['latency_ns']:.0f} ns",
                         "-" if steal_max is None else f"{steal_max:g} %",
                         _sharing(cpu),
                         f"{peak_rss / 2**20:.0f} MiB / {largest_ws / 2**20:.0f} MiB = {peak_rss / largest_ws:.1f}x"])
    what = "whole scan" if args.full else "latency part"
    print(table(["run", f"{what} s", f"/ {budget:.0f} s budget", "L1 (vs declared)", "L2 (vs declared)",
                 "L3", "caches", "memory", "steal (latency)", "sharing (capacity alone -> under load)", "peak RSS / largest working set (<= 4x)"], rows))
    print(f"L1 within 20 %: {ok_l1}/{args.runs} runs; L2 within 20 %: {ok_l2}/{args.runs} runs; "
          f"an L3 of its own: {ok_l3}/{args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
