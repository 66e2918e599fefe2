"""How much one CPU's latency curve depends on what runs on another CPU (issue 3's limit).

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
import time

from _common import table

SIZES_BYTES = (16 << 10, 128 << 10, 256 << 10, 304 << 10, 362 << 10, 512 << 10)
NEIGHBOURS = {
    "idle": None,
    "ALU spin": "x = 0\nwhile True:\n    x += 1",
    "256 KiB copy": "import numpy as np\na = np.ones(16384); b = np.empty_like(a)\nwhile True:\n    np.copyto(b, a)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpus", default="0,1", help="the chase's CPU and the neighbour's")
    a = ap.parse_args()
    mine, other = (int(c) for c in a.cpus.split(","))
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        print("needs two CPUs and sched_setaffinity", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {mine})
    from memprobe.probes.cpu.chase import ChaseProbe

    probe = ChaseProbe(64, "huge", seed=7)

    def latency_ns(size: int) -> float:
        probe.setup(size)
        return statistics.median(probe.run(5, min_hops=20_000, target_ns=3e6))

    got: dict[str, dict[int, list[float]]] = {n: {s: [] for s in SIZES_BYTES} for n in NEIGHBOURS}
    for _ in range(a.rounds):
        for name, code in NEIGHBOURS.items():
            p = None
            if code:
                pin = f"import os\nos.sched_setaffinity(0, {{{other}}})\n"
                p = subprocess.Popen([sys.executable, "-c", pin + code])
                time.sleep(0.3)
            try:
                for s in SIZES_BYTES:
                    got[name][s].append(latency_ns(s))
            finally:
                if p is not None:
                    p.kill()
                    p.wait()
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
