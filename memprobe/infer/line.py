"""Stage 3 of the flow (probe -> samples -> **inference** -> result -> report): line size from
the line probes' curves (never from sysfs). The false-sharing curve is preferred: prefetchers
cannot fake it, where they flatten the stride sweep (docs/method.md, "Line size")."""

from __future__ import annotations

import math


def line_from_false_sharing(strides_bytes: list[int], ns_per_op: list[float]) -> int | None:
    """The smallest stride at which the contended cost has dropped below the geometric middle
    of its highest and lowest value: from there on the two words live in different lines."""
    if len(strides_bytes) < 3:
        return None
    hi, lo = max(ns_per_op), min(ns_per_op)
    if lo <= 0 or hi / lo < 2.0:  # no contention visible (one core, or no coherence cost)
        return None
    mid = math.sqrt(hi * lo)
    for s, t in sorted(zip(strides_bytes, ns_per_op)):
        if t < mid:
            return int(s)
    return None


def line_from_stride(strides_bytes: list[int], ns_per_hop: list[float]) -> int | None:
    """Stride sweep (two dependent loads per block): the stride where the cost per hop has
    climbed half-way from its smallest-stride value to its largest -- the second load now
    misses. Returns None when the curve does not climb (prefetchers hide the line)."""
    pts = sorted(zip(strides_bytes, ns_per_hop))
    if len(pts) < 3:
        return None
    base, top = pts[0][1], max(t for _, t in pts)
    if base <= 0 or top / base < 1.3:
        return None
    mid = base + 0.5 * (top - base)
    for s, t in pts:
        if t >= mid:
            return int(s)
    return None
