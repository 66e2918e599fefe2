"""Stage 3 of the flow (... -> **inference** -> result): the one place every scan is checked
against physics. A figure that breaks a rule is flagged on its level (or on the compute
ceilings) with the reason; the roofline and the training model skip flagged figures, and the
report shows them struck through with the reason. Pure: reads the device's records only.

The rules, each with its physics:
- a streaming-store kernel at most (reads + 2 writes) / (reads + writes) of its cached twin at
  the same level and thread count: a non-temporal store saves at most the read-for-ownership of
  each written line (4/3 for triad, 3/2 for copy, 2 for write; STREAM counts no RFO);
- a kernel at a farther level no faster than at a nearer one: each level is fed from the one
  beyond;
- a level's latency above the level before it's;
- all threads at least one thread: more threads of the same kernel cannot move less data; a
  run slower with all threads ran beside a busy neighbour (contention), not at a ceiling;
- FMA throughput at most the ISA's FLOP per cycle x the measured clock x the units.
Each comparison allows NOISE of scatter between two separately measured figures.
"""

from __future__ import annotations

from memprobe.probes.kernels import stream_kernel
from memprobe.result import Code, DeviceResult, Flag

NOISE = 0.10  # two bandwidth figures taken apart differ by up to this on a quiet machine


def rfo_gain(kernel: str) -> float:
    """The most a streaming store can gain over its cached twin: the RFO read of each written
    line saved, against STREAM's count of bytes read + written."""
    k = stream_kernel(kernel)
    return (k.reads + 2 * k.writes) / (k.reads + k.writes)
CLOCK_SLACK = 1.05  # the measured clock's own error (boost can rise between the probes)


def check_device(dev: DeviceResult) -> int:
    """Flag the device's implausible figures in place (replacing earlier flags); returns how many."""
    for lv in dev.levels:
        lv.flags = []
    n = 0
    caches = dev.levels
    for i, lv in enumerate(caches):
        bw = lv.bandwidth_gbs or {}
        for kern, per in bw.items():
            for tk, v in per.items():
                if v is None:
                    continue
                fig = f"bandwidth/{kern}/{tk}"
                base = kern[:-3] if kern.endswith("_nt") else None
                twin = (bw.get(base) or {}).get(tk) if base else None
                gain = rfo_gain(kern) if base else None
                if twin and v > gain * twin * (1 + NOISE):
                    lv.flags.append(Flag(Code.STREAMING_ABOVE_RFO, fig, v,
                                         f"{v:.3g} GB/s is {v / twin:.2f}x the cached {base}'s {twin:.3g}: a "
                                         f"streaming store gains at most {gain:.2f}x (the read-for-ownership)"))
                    continue
                if tk == "threads_all":
                    one = per.get("threads_1")
                    if one and v < one / (1 + NOISE):
                        lv.flags.append(Flag(Code.ALL_BELOW_ONE, fig, v,
                                             f"{v:.3g} GB/s with all threads, below one thread's {one:.3g}: a "
                                             "neighbour was busy (contention), not a ceiling"))
                        continue
                nearer = next(((p.name, ((p.bandwidth_gbs or {}).get(kern) or {}).get(tk))
                               for p in reversed(caches[:i]) if ((p.bandwidth_gbs or {}).get(kern) or {}).get(tk)),
                              None)
                if nearer and v > nearer[1] * (1 + NOISE):
                    lv.flags.append(Flag(Code.FARTHER_FASTER, fig, v,
                                         f"{v:.3g} GB/s, faster than the nearer {nearer[0]}'s {nearer[1]:.3g}: "
                                         "a level is fed from the one beyond it"))
        if i > 0 and lv.latency_ns and caches[i - 1].latency_ns and lv.latency_ns < caches[i - 1].latency_ns:
            lv.flags.append(Flag(Code.LATENCY_ORDER, "latency", lv.latency_ns,
                                 f"{lv.latency_ns:.3g} ns, below the nearer {caches[i - 1].name}'s "
                                 f"{caches[i - 1].latency_ns:.3g} ns"))
        n += len(lv.flags)
    comp = dev.compute
    if comp is not None:
        comp.flags = []
        t = comp.theoretical
        for dtype, per in comp.fma.items():
            peak = t.gflops.get(dtype) if t else None
            for tk, v in per.items():
                if v is None or not peak:
                    continue
                units = t.units if tk == "threads_all" else 1
                cap = peak * units / t.units * CLOCK_SLACK
                if v > cap:
                    comp.flags.append(Flag(Code.ABOVE_ISA_PEAK, f"fma/{dtype}/{tk}", v,
                                           f"{v:.3g} GFLOP/s is above the ISA's width x the measured clock x "
                                           f"{units} unit(s): {peak * units / t.units:.3g}"))
        n += len(comp.flags)
    return n
