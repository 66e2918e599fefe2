"""Inference, last step: an inferred hierarchy as the result's `Level` records (ns and cycles
side by side, cycles from the measured clock), and the judgement of a level next to memory
from page-local chase ratios. Pure functions: the scan measures, these decide."""

from __future__ import annotations

from memprobe.infer.levels import MERGE_RATIO, Hierarchy, infer_levels
from memprobe.result import Code, Curve, Level

# a cache this close to memory's latency is either a memory-side cache (eDRAM L4: ~1.9x below
# DRAM) or page walks creeping with the buffer (a VM whose host maps memory with 4 KiB pages);
# the random chase cannot tell them apart, a page-local chase can (docs/method.md)
MEMORY_SIDE_RATIO = 1.6


def levels_from_hierarchy(h: Hierarchy, clock_ghz: float | None) -> list[Level]:
    """Result Levels from an inferred hierarchy: ns and cycles side by side (cycles from the
    measured clock when the curve is in ns)."""
    levels = []
    for lv in h.levels:
        ns = lv.latency if h.unit == "ns" else None
        cyc = lv.latency if h.unit == "cycles" else (ns * clock_ghz if ns and clock_ghz else None)
        level = Level(
            name=lv.name, size_bytes=lv.size_bytes, latency_ns=ns, latency_cycles=cyc,
            bandwidth_gbs={}, latency_spread=lv.spread, unstable=lv.unstable,
            size_interval_bytes=list(lv.size_range_bytes) if lv.size_range_bytes else None,
            edge=lv.edge if lv.size_bytes else None)
        if lv.name == "memory" and not h.memory_reached:
            level.note(Code.MEMORY_NOT_REACHED, "not reached: last point of the sweep")
        for code, text in lv.notes:
            level.note(code, text)
        if lv.unstable:
            level.note(Code.UNSTABLE, f"unstable: points on this plateau spread {lv.spread:.0%}")
        levels.append(level)
    return levels


def levels_from_curve(curve: Curve, clock_ghz: float | None, statistic: str = "low") -> tuple[list[Level], Hierarchy]:
    """Levels from each point's lower quartile ("low": the CPU's several passes on a shared
    machine) or its best repetition ("best": one pass on a device no one shares)."""
    ys = curve.lows() if statistic == "low" else curve.bests()
    h = infer_levels(curve.xs(), ys, curve.unit, samples=[p.samples for p in curve.points])
    return levels_from_hierarchy(h, clock_ghz), h


def _near_memory(lv: Level, memory: Level) -> bool:
    return bool(lv.latency_ns and memory.latency_ns and memory.latency_ns / lv.latency_ns < MEMORY_SIDE_RATIO)


def note_near_memory(levels: list[Level]) -> None:
    """Note each cache within MEMORY_SIDE_RATIO of memory's latency (see there)."""
    memory = levels[-1] if levels and levels[-1].size_bytes is None else None
    if memory is None or not memory.latency_ns:
        return
    for lv in levels[:-1]:
        if _near_memory(lv, memory):
            lv.note(Code.NEAR_MEMORY,
                    f"within {MEMORY_SIDE_RATIO:g}x of memory's latency: a memory-side cache, or page walks "
                    "that grow with the buffer (a VM whose host maps its memory with 4 KiB pages); "
                    "compare with another scan")


def memory_side_candidate(levels: list[Level]) -> Level | None:
    """The last cache, when it is within MEMORY_SIDE_RATIO of memory and there is a level
    before it (the check needs a size on its plateau past the level before)."""
    if len(levels) < 3 or levels[-1].size_bytes is not None:
        return None
    cand, memory = levels[-2], levels[-1]
    if cand.size_bytes and _near_memory(cand, memory):
        return cand
    return None


def is_memory_side_cache(inside_ns: float, beyond_ns: float) -> bool:
    """A page-local chase, which page walks hardly touch, that still steps by MERGE_RATIO
    between inside a level and 4x its capacity sees a cache; less is page walks."""
    return beyond_ns / inside_ns >= MERGE_RATIO
