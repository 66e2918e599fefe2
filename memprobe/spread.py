"""Beside the flow (result -> **check**, **compare**): how far each figure of a scan moves from
run to run, read from the samples the scan itself keeps (nothing is measured here).

A figure's spread in one scan is the range (largest minus smallest) of the samples the figure
was taken from, in the figure's unit:
- a level's bandwidth, per kernel and thread count: the range of every sample of the sizes
  its roof is the best of (`BandwidthSetup.size_range_bytes` on the bandwidth curve, the all-thread samples
  taken off the curve where the setup kept them, memory's STREAM-sized point) and the second
  round the scan takes at its end (`BandwidthSetup.samples_recheck`), or where wider the
  widest relative move of a round's best among the level's kernels at that thread count
  (`bandwidth_spread`);
  where the scan kept no setup (an older scan, a GPU), the repetitions of the curve's point
  the figure is;
- an FMA ceiling: its repetitions (`ComputeCeilings.fma_samples`);
- a level's latency: the plateau's spread as inference recorded it (`Level.latency_spread`,
  p90 - p10 of the plateau's points over their median) times the latency;
- a cache's size: its interval (`Level.size_interval_bytes`, the capacities the curve cannot
  tell apart), as a band of its own rather than a spread.
A figure whose samples the scan did not keep (a memprobe/1 file, a GPU figure without a setup)
has a spread of 0: it is judged by its tolerance alone.

Beside the spread, the scan's record of what else ran: `busy_text` says whether the stages a
figure comes from ran beside other processes or steal at or past the thresholds the scan
itself warned by (`DeviceExtra.others_notable_percent`, `steal_notable_percent`). Such a figure
can read slow for a reason outside the machine; `check` and the fleet do not judge it.
"""

from __future__ import annotations

import math
from typing import Optional

from memprobe.result import Curve, CurvePoint, DeviceResult, Level


# the stages each kind of figure is measured in
LATENCY_STAGES = ("latency", "latency_recheck", "memory_side")
BANDWIDTH_STAGES = ("bandwidth", "bandwidth_recheck")
COMPUTE_STAGES = ("compute",)


def busy_text(dev: DeviceResult, stages: tuple[str, ...]) -> str:
    """Why the scan's own record says these stages ran beside busy neighbours ('' if not):
    other processes or steal at or past the thresholds the scan warned by."""
    e = dev.extra
    out = []
    for st in stages:
        o, s = e.stage_others_percent.get(st), e.stage_steal_percent.get(st)
        if o is not None and e.others_notable_percent is not None and o >= e.others_notable_percent:
            out.append(f"{st}: other processes {o:g} % of a CPU")
        if s is not None and e.steal_notable_percent is not None and s >= e.steal_notable_percent:
            out.append(f"{st}: steal {s:g} %")
    return "; ".join(out)


def sample_range(samples: list[float]) -> float:
    """Largest minus smallest of the finite samples; 0 for fewer than two."""
    xs = [float(x) for x in samples if x is not None and math.isfinite(x)]
    return max(xs) - min(xs) if len(xs) > 1 else 0.0


def size_interval(lv: Level) -> Optional[tuple[float, float]]:
    """The capacities the scan cannot tell apart: the level's interval (stretched to hold its
    size); None for memory and where the scan kept no interval."""
    iv = lv.size_interval_bytes
    if not lv.size_bytes or not iv or len(iv) != 2 or not 0 < iv[0] <= iv[1]:
        return None
    return float(min(iv[0], lv.size_bytes)), float(max(iv[1], lv.size_bytes))


def latency_spread_ns(lv: Level) -> float:
    """The plateau's p90 - p10 spread, in ns (0 where the scan kept none)."""
    if lv.latency_ns is None or not lv.latency_spread or not math.isfinite(lv.latency_spread):
        return 0.0
    return abs(lv.latency_spread * lv.latency_ns)


def _in(curve: Optional[Curve], lo: float, hi: float) -> list[float]:
    return [x for p in (curve.points if curve else []) if lo <= p.x <= hi for x in p.samples]


def _nearest(curve: Optional[Curve], x: float) -> list[float]:
    if curve is None or not curve.points or x <= 0:
        return []
    p = min(curve.points, key=lambda p: abs(math.log(p.x / x)) if p.x > 0 else math.inf)
    return list(p.samples)


def _holding(curve: Curve, value: Optional[float]) -> list[float]:
    if value is None:
        return []
    p = next((p for p in curve.points if any(math.isclose(x, value, rel_tol=1e-9) for x in p.samples)), None)
    return list(p.samples) if p is not None else []


def memory_point(dev: DeviceResult, kernel: str, threads: str) -> Optional[CurvePoint]:
    """Memory's STREAM-sized point of a kernel's bandwidth curve (its arrays times the setup's
    array size; the curve's largest size where the scan kept no array size)."""
    curve = dev.curve(f"bandwidth_{kernel}_{threads}")
    mem = next((lv for lv in dev.levels if not lv.size_bytes), None)
    setup = dev.bandwidth.setup(mem.name) if dev.bandwidth is not None and mem is not None else None
    if curve is None or not curve.points:
        return None
    arrays = curve.params.get("arrays")
    if setup is not None and setup.array_bytes and isinstance(arrays, int):
        x = arrays * setup.array_bytes
        return min(curve.points, key=lambda p: abs(math.log(p.x / x)) if p.x > 0 else math.inf)
    return max(curve.points, key=lambda p: p.x)


def bandwidth_samples(dev: DeviceResult, lv: Level, kernel: str, threads: str) -> list[float]:
    """The samples a level's bandwidth figure is the best of (scan/ceilings.py picks them the
    same way): the bandwidth stage's and the second round's at the end of the scan
    (`BandwidthSetup.samples_recheck`); empty where the scan did not keep them."""
    setup = dev.bandwidth.setup(lv.name) if dev.bandwidth is not None else None
    recheck = list(((setup.samples_recheck or {}).get(kernel) or {}).get(threads) or []) if setup else []
    return _first_round(dev, lv, setup, kernel, threads) + recheck


def _first_round(dev: DeviceResult, lv: Level, setup, kernel: str, threads: str) -> list[float]:
    curve = dev.curve(f"bandwidth_{kernel}_{threads}")
    if curve is None:
        return []
    if setup is None:  # an older scan, a GPU: the repetitions of the point the figure came from
        return _holding(curve, ((lv.bandwidth_gbs or {}).get(kernel) or {}).get(threads))
    if not lv.size_bytes:  # memory: the one STREAM-sized point of the kernel's curve
        p = memory_point(dev, kernel, threads)
        return list(p.samples) if p is not None else []
    lo, hi = setup.size_range_bytes or (setup.size_bytes_threads_1, setup.size_bytes_threads_1)
    if threads == "threads_1":
        return _in(curve, lo, hi)
    off = (setup.samples_threads_all_off_curve or {}).get(kernel)
    if off:
        return list(off)
    n = max(1, setup.threads_all)
    lo_all, hi_all = lo * n, (hi * n if lv.sharing == "private" else hi)
    got = _in(curve, lo_all, hi_all) if lo_all <= hi_all else []
    return got or _nearest(curve, setup.size_bytes_threads_all)


def round_bests(dev: DeviceResult, lv: Level, kernel: str, threads: str) -> list[float]:
    """The best sample of each round the figure was measured in: the bandwidth stage's, and
    the second round's at the end of the scan (none where the scan kept no second round)."""
    setup = dev.bandwidth.setup(lv.name) if dev.bandwidth is not None else None
    recheck = [x for x in ((setup.samples_recheck or {}).get(kernel) or {}).get(threads) or []
               if x is not None and math.isfinite(x)] if setup else []
    first = [x for x in _first_round(dev, lv, setup, kernel, threads) if x is not None and math.isfinite(x)]
    return [max(first), max(recheck)] if first and recheck else []


def bandwidth_spread(dev: DeviceResult, lv: Level, kernel: str, threads: str) -> float:
    """The range of the figure's own samples, or, where wider, the widest relative move of a
    round's best between the two rounds among the level's kernels at the same thread count,
    times the figure. Every kernel of a level draws on the same ports (memory: the same bus,
    shared with the host's other guests) in the same rounds, so what moved one ceiling between
    the rounds could have moved each. Round bests, not every sample: the figure is a best, and
    one repetition a neighbour slowed says nothing of how far a best moves."""
    own = sample_range(bandwidth_samples(dev, lv, kernel, threads))
    fig = ((lv.bandwidth_gbs or {}).get(kernel) or {}).get(threads)
    if fig is None or not math.isfinite(fig):
        return own
    moves = []
    for k, per in (lv.bandwidth_gbs or {}).items():
        b = round_bests(dev, lv, k, threads) if per.get(threads) is not None else []
        if b and max(b) > 0:
            moves.append((max(b) - min(b)) / max(b))
    return max(own, max(moves, default=0.0) * fig)


def fma_spread(dev: DeviceResult, dtype: str, threads: str) -> float:
    if dev.compute is None:
        return 0.0
    return sample_range((dev.compute.fma_samples.get(dtype) or {}).get(threads) or [])


def scale_memory_bandwidth(dev: DeviceResult, factor: float) -> None:
    """Scale, in place, the memory level's bandwidth figures and the samples each is read from
    (memory's point on each kernel's curve) by `factor`, so figure and spread stay one: what a
    node whose memory moves `factor` times the bytes would hold. For doctored baselines
    (`benchmarks/check_self.py`, the check and fleet tests); the scan never calls it."""
    mem = next((lv for lv in dev.levels if not lv.size_bytes), None)
    if mem is None:
        return
    mem.bandwidth_gbs = {k: {t: (v * factor if v is not None else v) for t, v in per.items()}
                         for k, per in mem.bandwidth_gbs.items()}
    for k, per in mem.bandwidth_gbs.items():
        for t in per:
            p = memory_point(dev, k, t)
            if p is not None:
                p.samples = [x * factor for x in p.samples]
    setup = dev.bandwidth.setup(mem.name) if dev.bandwidth is not None else None
    if setup is not None and setup.samples_recheck:
        setup.samples_recheck = {k: {t: [x * factor for x in xs] for t, xs in per.items()}
                                 for k, per in setup.samples_recheck.items()}
