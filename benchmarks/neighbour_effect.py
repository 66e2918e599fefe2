"""Beside the flow: how much one CPU's latency curve (stage 1's chase) depends on what runs on
another CPU, the limit on how steady a shared machine's inferred L2 can be.

The chase runs pinned to one CPU at sizes around L1 and the L2 edge while another CPU is idle,
runs a pure ALU spin (no memory traffic), or copies a 256 KiB working set (L2-resident), in
rounds that alternate the three conditions; each latency is printed as a ratio to the idle
rounds' median. On a VM whose vCPUs share a core, a boost budget or a host cache with each
other, the curve one vCPU measures moves with the other's load: the L2 a scan can infer is then
what the neighbour leaves, which no probe on this vCPU can change.

usage: python benchmarks/neighbour_effect.py [--rounds N] [--cpus A,B]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from _common import table

SIZES_BYTES = (16 << 10, 128 << 10, 256 << 10, 304 << 10, 362 << 10, 512 << 10)
NEIGHBOURS = {
    "idle": None,
    "ALU spin": "x = 0\nwhile True:\n    x += 1",
    "256 KiB copy": "import numpy as np\na = np.ones(16384); b = np.empty_like(a)\nwhile True:\n    np.copyto(b, a)",
}


# the neighbour dies with this script however it ends (Linux: a parent-death signal), and says
# when it runs, so no row measures a CPU whose neighbour is still starting
CHILD_PRELUDE = """import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
os.sched_setaffinity(0, {%d})
print("ready", flush=True)
"""


def start_neighbour(code: str, cpu: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD_PRELUDE % cpu + code], stdout=subprocess.PIPE, text=True)
    try:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the neighbour on CPU {cpu} did not start (exit {p.poll()})")
    except BaseException:
        p.kill()
        p.wait()
        raise
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpus", help="the chase's CPU and the neighbour's, e.g. 0,1 (default: the first two allowed)")
    a = ap.parse_args()
    if not hasattr(os, "sched_setaffinity"):
        print("needs sched_setaffinity (Linux)", file=sys.stderr)
        return 1
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        print(f"needs two CPUs, this process may use {len(allowed)}", file=sys.stderr)
        return 1
    try:
        mine, other = (int(c) for c in a.cpus.split(",")) if a.cpus else allowed[:2]
    except ValueError:
        print("--cpus takes two CPU numbers, e.g. 0,1", file=sys.stderr)
        return 2
    if mine == other or not {mine, other} <= set(allowed):
        print(f"--cpus needs two different CPUs out of {allowed}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {mine})
    from memprobe.probes.cpu.chase import ChaseProbe

    probe = ChaseProbe(64, "huge", seed=7)

    def latency_ns(size: int) -> float:
        probe.setup(size)
        return statistics.median(probe.run(5, min_hops=20_000, target_ns=3e6))

    got: dict[str, dict[int, list[float]]] = {n: {s: [] for s in SIZES_BYTES} for n in NEIGHBOURS}
    try:
        for _ in range(a.rounds):
            for name, code in NEIGHBOURS.items():
                p = start_neighbour(code, other) if code else None
                try:
                    for s in SIZES_BYTES:
                        got[name][s].append(latency_ns(s))
                finally:
                    if p is not None:
                        p.kill()
                        p.wait()
    finally:
        probe.close()
    idle = {s: statistics.median(v) for s, v in got["idle"].items()}
    rows = [[f"{s >> 10} KiB", f"{idle[s]:.2f}"] +
            [f"{statistics.median(got[n][s]) / idle[s]:.2f}" for n in NEIGHBOURS if n != "idle"]
            for s in SIZES_BYTES]
    print(f"chase on CPU {mine}, neighbour on CPU {other}, median of {a.rounds} alternating rounds")
    print(table(["size", "idle ns"] + [f"{n} / idle" for n in NEIGHBOURS if n != "idle"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
