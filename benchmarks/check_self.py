"""Beside the flow (result -> check): does a healthy node pass its own check? `memprobe check`
both ways on pairs of back-to-back scans of one machine, then against a doctored baseline (a
copy of one scan with memory's bandwidth doubled, figures and samples, written through the
real ScanResult types), which must fail naming memory's figures and no other.

Target (issue 23): every direction passes (10 of 10 on five pairs of default scans); the
doubled-memory baseline fails, naming only memory figures. The table counts, per direction,
the judged figures that hold, those not judged (they fell short while the scan recorded busy
neighbours beside their stage) and the warnings (a level found in one scan only, ...); the
lines below it name them. A scan the check cannot read is a row of its own (BAD INPUT). The
doubled-memory baseline is made from the scan whose bandwidth stage ran the quietest.

usage: python benchmarks/check_self.py [--make N] [--keep DIR] [SCAN ...]
  SCAN     scan.json files or folders holding one, taken in pairs in the order given
  --make N makes N pairs of default scans first (`memprobe scan --no-train`, about a minute
           each on a 2-vCPU guest), each pair back to back
  --keep DIR keeps the scans made under DIR/pairK/{a,b} (default: a temporary folder)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import table

from memprobe.result import ScanResult
from memprobe.spread import scale_memory_bandwidth


def scan(out: Path) -> Path:
    """A default scan into OUT. One that exits non-zero (a stage failed) still wrote what it
    measured, marked incomplete: the check reads it as it would on a node, so it is kept."""
    cmd = [sys.executable, "-m", "memprobe", "scan", "--no-train", "--no-progress", "--out", str(out)]
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        failed = [ln for ln in p.stderr.splitlines() if "failed" in ln] or p.stderr.strip().splitlines()[-1:]
        print(f"memprobe scan exited {p.returncode}: {'; '.join(failed)}", file=sys.stderr)
        if not (out / "scan.json").exists():
            raise SystemExit(f"memprobe scan wrote no scan.json:\n{p.stderr}")
    return out / "scan.json"


def check(a: Path, b: Path) -> tuple[int, dict]:
    """`memprobe check A --baseline B --json`: (exit status, its record; on exit 2, bad input,
    a record with no checks and the error line as its one warning)."""
    p = subprocess.run([sys.executable, "-m", "memprobe", "check", str(a), "--baseline", str(b), "--json"],
                       capture_output=True, text=True)
    if p.returncode == 2:
        return 2, {"checks": [], "warnings": [p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "exit 2"]}
    if p.returncode != 0 and p.returncode != 1:
        raise SystemExit(f"memprobe check failed ({p.returncode}):\n{p.stderr}")
    return p.returncode, json.loads(p.stdout)


def double_memory(src: Path, dst: Path) -> Path:
    """A copy of the scan whose memory reads twice as fast: each bandwidth figure of the memory
    level and the samples of memory's point on each kernel's curve."""
    r = ScanResult.load(src)
    for dev in r.devices.values():
        scale_memory_bandwidth(dev, 2.0)
    r.save(dst)
    return dst


def bandwidth_others(p: Path) -> float:
    """Other processes beside the scan's CPU bandwidth stage, % of a CPU (inf: unreadable)."""
    try:
        return ScanResult.load(p).devices["cpu"].extra.stage_others_percent.get("bandwidth", 0.0)
    except Exception:
        return float("inf")


def scan_file(p: Path) -> Path:
    return p / "scan.json" if p.is_dir() else p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scans", nargs="*", type=Path, metavar="SCAN")
    ap.add_argument("--make", type=int, default=0, metavar="N")
    ap.add_argument("--keep", type=Path, metavar="DIR")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        files = [scan_file(p) for p in args.scans]
        for k in range(args.make):
            for side in ("a", "b"):
                files.append(scan(root / f"pair{k + 1}" / side))
                print(f"made {files[-1]}", file=sys.stderr)
        if len(files) < 2 or len(files) % 2:
            ap.error("give scans in pairs (A1 B1 A2 B2 ...) or --make N")
        rows, passed, details = [], 0, []
        for k in range(0, len(files), 2):
            a, b = files[k], files[k + 1]
            for x, y, d in ((a, b, "A vs B"), (b, a, "B vs A")):
                rc, rec = check(x, y)
                by = {st: [c["figure"] for c in rec["checks"] if c["status"] == st] for st in ("fail", "busy")}
                judged = sum(c["status"] in ("ok", "fail") for c in rec["checks"])
                passed += rc == 0
                status = {0: "pass", 1: "FAIL", 2: "BAD INPUT"}[rc]
                rows.append([str(k // 2 + 1), d, status, f"{judged - len(by['fail'])}/{judged}",
                             str(len(by["busy"])), str(len(rec["warnings"]))])
                tag = f"pair {k // 2 + 1} {d}"
                details += [f"{tag}: failed: {', '.join(by['fail'])}"] if by["fail"] else []
                details += [f"{tag}: not judged (busy neighbours): {', '.join(by['busy'])}"] if by["busy"] else []
                details += [f"{tag}: warning: {w}" for w in rec["warnings"]]
        print(table(["pair", "direction", "check", "judged figures hold", "not judged (busy)", "warnings"], rows))
        print("\n".join(details))
        print(f"{passed} of {len(rows)} directions pass")
        # the doctored baseline: a copy of the scan whose bandwidth stage ran the quietest (a
        # figure that falls short beside busy neighbours is not judged, so a busy one tests nothing)
        src = min(files, key=bandwidth_others)
        doctored = double_memory(src, root / "doubled_memory.json")
        rc, rec = check(src, doctored)
        failed = [c["figure"] for c in rec["checks"] if c["status"] == "fail"]
        only_memory = bool(failed) and all(f.split()[1] == "memory" for f in failed)
        print(f"doubled-memory baseline (a copy of {src}, its bandwidth stage beside other processes at "
              f"{bandwidth_others(src):g} % of a CPU): {'FAIL' if rc == 1 else 'pass'} (exit {rc}), "
              f"{len(failed)} figures fail, {'only memory figures' if only_memory else 'NOT only memory figures'}: "
              f"{', '.join(failed) or '-'}")
        ok = passed == len(rows) and rc == 1 and only_memory
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
