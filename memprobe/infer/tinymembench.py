"""Samples from outside the flow: tinymembench output (github.com/ssvb/tinymembench), for
stage 3 (inference) via `memprobe infer`.

Its memory latency test prints `block size : single random read / dual random read` and a row
per size in bytes (`  131072 :    1.4 ns          /     1.8 ns`); the single random read is
the dependent chase. Newer builds print the table twice, `[MADV_NOHUGEPAGE]` and
`[MADV_HUGEPAGE]`: the huge-page table is read when present (TLB misses do not pose as a
level there: DESIGN.md, "Pages"), else the first.

tinymembench prints *extra* time over an L1 hit (its Note 1), so the L1 plateau reads 0.0 ns,
which a log-latency curve cannot hold. The reader adds an L1 hit latency, `l1_ns` (1 ns by
default: 4 cycles at 4 GHz, 3 at 3 GHz), to every point and says so in the curve's format:
capacities do not move with it, latencies and their ratios do.
"""

from __future__ import annotations

import re

from memprobe.errors import InputError

HEADER = re.compile(r"^block size\s*:\s*single random read\s*/\s*dual random read(?P<tail>.*)$", re.M)
ROW = re.compile(r"^\s*(?P<size>\d+)\s*:\s*(?P<single>[\d.]+)\s*ns\s*/\s*(?P<dual>[\d.]+)\s*ns")
DEFAULT_L1_NS = 1.0


def is_tinymembench(text: str) -> bool:
    return bool(HEADER.search(text))


def parse(text: str, name: str = "input", l1_ns: float = DEFAULT_L1_NS):
    from memprobe.infer.curves import LatencyCurve

    heads = list(HEADER.finditer(text))
    if not heads:
        raise InputError(f"{name}: no tinymembench latency table ('block size : single random read ...')")
    head = next((h for h in heads if "MADV_HUGEPAGE" in h.group("tail")), heads[0])
    sizes, lats = [], []
    lines = text[head.end():].splitlines()[1:]
    for line in lines:
        m = ROW.match(line)
        if not m:
            if sizes:
                break
            continue
        sizes.append(float(m.group("size")))
        lats.append(float(m.group("single")) + l1_ns)
    if len(set(sizes)) < 4:
        raise InputError(f"{name}: the tinymembench latency table has {len(set(sizes))} sizes, at least 4 are needed")
    label = head.group("tail").strip(" ,") or "one table"
    return LatencyCurve(sizes, lats, "ns", f"tinymembench single random read ({label}), "
                        f"extra time over L1 + {l1_ns:g} ns assumed for an L1 hit")
