"""Beside the flow: how a scan stops when its scheduler, its terminal or its user stops it.

For each of SIGINT (Ctrl-C), SIGTERM (Slurm's scancel and time limit, systemd, docker stop) and
SIGHUP (a closed ssh session): start a default `memprobe scan --no-train`, send the signal
AFTER seconds in (default 20), and print how long the process took to end, its exit status
(target 128 + the signal) and whether the scan.json it left loads and is marked incomplete with
the signal named. Target: ended within 2 s, a loadable scan.json, incomplete.

usage: python benchmarks/signals.py [--after SECONDS]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import table

from memprobe.result import ScanResult, SchemaError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--after", type=float, default=20.0)
    args = ap.parse_args()
    rows = []
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name)
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "scan"
            p = subprocess.Popen([sys.executable, "-m", "memprobe", "scan", "--no-train", "--no-progress",
                                  "--out", str(out)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            time.sleep(args.after)
            t0 = time.perf_counter()
            os.kill(p.pid, sig)
            p.wait(timeout=120)
            took = time.perf_counter() - t0
            try:
                scan = ScanResult.load(out / "scan.json")
                state = (f"loads; complete={scan.complete}; stopped_by={scan.settings.stopped_by}; "
                         f"{sum(len(c.points) for dev in scan.devices.values() for c in dev.curves)} points kept")
            except SchemaError as exc:
                state = f"NOT loadable: {exc}"
            rows.append([name, f"{took:.2f}", str(p.returncode), str(128 + int(sig)), state])
    print(table(["signal", "seconds to end", "exit", "want", "scan.json"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
