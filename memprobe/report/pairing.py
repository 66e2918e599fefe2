"""Stage 5 of the flow (... -> result -> **report**): which measured level stands for which
declared cache, or for which level of another scan. One function pairs them for every view
(the terminal table, the HTML report, `compare`), so the three never disagree.

Pairing is by size, not by name or position: inference names levels in the order it finds
them, so a missed L1, or a VM's L3 slice found as its own level, would otherwise compare the
measured "L1" with the declared L1 and call every level wrong. Main memory pairs with main
memory.
- With declared caches: each measured cache takes the nearest declared one in log2(size), one
  to one, nearest pairs first; pairs further apart than MATCH_FACTOR stay unpaired and are
  shown so (a VM's L3 slice is a fraction of the declared L3 and still that L3).
- With another scan's levels: two levels are one level only when their size intervals overlap
  (`size_interval_bytes`, the capacities each curve cannot tell apart; a level that kept no
  interval stands for its size within DISAGREE_FRACTION either way) and their latencies are
  one plateau (within SAME_LEVEL_LATENCY), one to one, nearest in log2(size) first. A level
  with no such partner is shown alone: nearest size alone paired one scan's missed L3 with the other's memory-side level eight
  times its size, and `check` then failed a healthy node on that pair.
  One exception, by what a level is (a latency plateau between two others): unpaired levels
  of the two scans between the same two paired neighbours (or after the same last paired
  cache) that are each other's nearest plateau among all the other scan's levels are one
  level whose size moved. A VM's slice of the host L3 read 2.4 MiB in one scan and
  4.8 MiB in the next, both at 15.4 ns, with intervals that did not meet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Optional, TypeVar

from memprobe.result import DeclaredCache, DeviceResult, Level

# a measured capacity more than this far from its counterpart is flagged in every view
DISAGREE_FRACTION = 0.25
# a level paired with a declared cache (or another scan's level) must be within this factor of it:
# wide enough for a VM's slice of a host L3 (14 MiB of a declared 260 MiB on a 2-vCPU guest)
MATCH_FACTOR = 32.0
# two plateaus within this factor in latency are one level, as inference merges them
# (docs/method.md, "Merging": adjacent plateaus within 25 % of each other)
SAME_LEVEL_LATENCY = 1.25

T = TypeVar("T")


@dataclass
class Pair(Generic[T]):
    """A measured level and its counterpart (a declared cache, or another scan's level)."""

    measured: Optional[Level]
    other: Optional[T]
    is_memory: bool = False

    @property
    def other_size_bytes(self) -> Optional[int]:
        return getattr(self.other, "size_bytes", None) if self.other is not None else None

    @property
    def size_diff(self) -> Optional[float]:
        """(measured - other) / other, or None when either is missing."""
        m = self.measured.size_bytes if self.measured is not None else None
        o = self.other_size_bytes
        return (m - o) / o if m and o else None

    @property
    def flagged(self) -> bool:
        """Sizes further apart than DISAGREE_FRACTION, or a cache without a counterpart."""
        if self.is_memory:
            return False
        if self.measured is None or self.other is None:
            return True
        d = self.size_diff
        return d is not None and abs(d) > DISAGREE_FRACTION


def pair_by_size(a: list[int], b: list[int], max_factor: float = MATCH_FACTOR) -> dict[int, int]:
    """{index in a: index in b}: one to one, nearest in log2(size) first, within max_factor."""
    cands = sorted((abs(math.log2(x) - math.log2(y)), i, j)
                   for i, x in enumerate(a) for j, y in enumerate(b)
                   if x > 0 and y > 0 and abs(math.log2(x) - math.log2(y)) <= math.log2(max_factor))
    out: dict[int, int] = {}
    used: set[int] = set()
    for _d, i, j in cands:
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out


def interval(lv: Level) -> tuple[float, float]:
    """The capacities a level's curve cannot tell apart (its size within DISAGREE_FRACTION
    where the scan kept no interval)."""
    iv, s = lv.size_interval_bytes, float(lv.size_bytes or 0)
    if s and iv and len(iv) == 2 and 0 < iv[0] <= iv[1]:
        return min(float(iv[0]), s), max(float(iv[1]), s)
    return s / (1 + DISAGREE_FRACTION), s * (1 + DISAGREE_FRACTION)


def same_plateau(x: Level, y: Level) -> bool:
    """Latencies within SAME_LEVEL_LATENCY of each other (true where either has none)."""
    if not x.latency_ns or not y.latency_ns:
        return True
    return max(x.latency_ns, y.latency_ns) <= SAME_LEVEL_LATENCY * min(x.latency_ns, y.latency_ns)


def pair_by_interval(a: list[Level], b: list[Level], a_all: Optional[list[Level]] = None,
                     b_all: Optional[list[Level]] = None) -> dict[int, int]:
    """{index in a: index in b}: levels whose size intervals overlap and whose latencies are
    one plateau, one to one, nearest in log2(size) first; then, in each gap the pairs leave,
    levels of one plateau whose sizes moved (`_same_plateau_in_gaps`)."""
    cands = []
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            (alo, ahi), (blo, bhi) = interval(x), interval(y)
            if x.size_bytes and y.size_bytes and alo <= bhi and blo <= ahi and same_plateau(x, y):
                cands.append((abs(math.log2(x.size_bytes) - math.log2(y.size_bytes)), i, j))
    out: dict[int, int] = {}
    used: set[int] = set()
    for _d, i, j in sorted(cands):
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return _same_plateau_in_gaps(a, b, out, a_all, b_all)


def _nearest_plateau(lv: Level, others: list[Level]) -> Optional[Level]:
    """The level of `others` nearest to `lv` in log latency (None where latencies are missing)."""
    cands = [o for o in others if o.latency_ns and lv.latency_ns]
    return min(cands, key=lambda o: abs(math.log(o.latency_ns / lv.latency_ns)), default=None)


def _same_plateau_in_gaps(a: list[Level], b: list[Level], paired: dict[int, int],
                          a_all: Optional[list[Level]] = None, b_all: Optional[list[Level]] = None) -> dict[int, int]:
    """`paired` plus, in each gap between consecutive paired levels (and after the last), the
    unpaired levels of the two sides that are each other's nearest plateau: of all the other
    scan's levels (`a_all`, `b_all`: memory too), each is the one nearest the other in log
    latency. A slice of the same L3 at 13 and 17 ns pairs; a stretch of the climb to memory
    read as an "L4" at 28 ns, beside an L3 at 14 ns that pairs with the other scan's, does not."""
    out = dict(paired)
    a_all, b_all = a_all or a, b_all or b
    anchors = sorted(paired.items())
    if any(j1 >= j2 for (_i1, j1), (_i2, j2) in zip(anchors, anchors[1:])):
        return out  # crossed pairs: no gaps to speak of
    bounds = [(-1, -1)] + anchors + [(len(a), len(b))]
    for (ia, ja), (ib, jb) in zip(bounds, bounds[1:]):
        right = [j for j in range(ja + 1, jb) if j not in paired.values()]
        for i in range(ia + 1, ib):
            if i in paired:
                continue
            for j in right:
                if j not in out.values() and _nearest_plateau(a[i], b_all) is b[j] \
                        and _nearest_plateau(b[j], a_all) is a[i]:
                    out[i] = j
                    break
    return out


def _pairs(measured: list[Level], others: list, other_memory=None, measured_memory: Level | None = None,
           by_interval: bool = False) -> list[Pair]:
    m = (pair_by_interval(measured, others, measured + [measured_memory] * (measured_memory is not None),
                          others + [other_memory] * (other_memory is not None)) if by_interval
         else pair_by_size([lv.size_bytes for lv in measured], [o.size_bytes for o in others]))
    rows = [Pair(lv, others[m[i]] if i in m else None) for i, lv in enumerate(measured)]
    used = set(m.values())
    rows += [Pair(None, o) for j, o in enumerate(others) if j not in used]
    rows.sort(key=lambda p: (p.measured.size_bytes if p.measured else p.other.size_bytes))
    if measured_memory is not None or other_memory is not None:
        rows.append(Pair(measured_memory, other_memory, is_memory=True))
    return rows


def _caches(dev: DeviceResult) -> list[Level]:
    return [lv for lv in dev.levels if lv.size_bytes]


def _memory(dev: DeviceResult) -> Level | None:
    return next((lv for lv in dev.levels if not lv.size_bytes), None)


def pair_with_declared(dev: DeviceResult) -> list[Pair[DeclaredCache]]:
    """Each measured cache with a declared data cache, nearest first; declared caches nothing
    was paired with get a row of their own; memory last (its declared counterpart: None)."""
    return _pairs(_caches(dev), dev.declared.data_caches(), None, _memory(dev))


def pair_with_scan(a: DeviceResult, b: DeviceResult) -> list[Pair[Level]]:
    """Levels of two scans side by side (`measured` from a, `other` from b), paired by
    overlapping size intervals; memory with memory."""
    return _pairs(_caches(a), _caches(b), _memory(b), _memory(a), by_interval=True)
