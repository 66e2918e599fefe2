"""Stage 3 of the flow (... -> **inference** -> ...): is a level private to a core (an SM) or
shared by all of them, from the sharing probe's latencies. Pure: the scans measure, this decides,
with one threshold for CPU and GPU.

The probe chases a working set of a fraction of the level's capacity on one unit, alone, then
while every other unit chases a set of its own of the same size. A private level keeps its
latency (each unit has its own); a shared one overflows once the sets together outgrow it and
its latency rises towards the next level's. Two things make the answer "undetermined" rather
than a guess: a ratio within the repetitions' own spread of the threshold, and sets that together
still fit the largest capacity the latency curve allows (the top of the level's interval), where
a shared level would not overflow either.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# loaded over alone latency above this: shared. A private level under load rises only by the
# other units' traffic through the levels beyond it (a few percent); a shared one overflowing
# by 40 % or more misses a third of its lines or more, a rise of 2x and up
SHARED_RATIO = 1.25
NOISE_FLOOR = 0.02  # repetitions of a chase agree to about this even on a quiet machine


@dataclass
class SharingVerdict:
    verdict: str  # "private" | "shared" | "undetermined"
    ratio: float
    why: str


def judge_sharing(alone: list[float], loaded: list[float], set_bytes: int, units: int,
                  capacity_hi_bytes: int | None) -> SharingVerdict:
    """`alone`, `loaded`: latency samples of the one unit's chase; `set_bytes` each unit's
    working set, `units` how many chased at once; `capacity_hi_bytes` the top of the level's
    size interval (None: its size)."""
    a, b = min(alone), min(loaded)  # best repetition: other tenants only ever add latency
    ratio = b / a
    med = statistics.median(alone)
    band = max((med - a) / med, NOISE_FLOOR)  # the alone samples' typical rise above their best
    if ratio < 1 / (1 + 2 * band):
        return SharingVerdict("undetermined", ratio,
                              f"latency x{ratio:.2f}: faster under load than alone, beyond the repetitions' "
                              "spread: the run alone was disturbed")
    if ratio > SHARED_RATIO * (1 + band):
        return SharingVerdict("shared", ratio, f"latency x{ratio:.2f} with {units} units loading it")
    if capacity_hi_bytes and units * set_bytes <= capacity_hi_bytes:
        return SharingVerdict("undetermined", ratio,
                              f"the {units} sets ({units * set_bytes / 2**20:.3g} MiB together) still fit the "
                              f"largest capacity the curve allows ({capacity_hi_bytes / 2**20:.3g} MiB): a "
                              "shared level would not overflow either")
    if ratio < SHARED_RATIO / (1 + band):
        return SharingVerdict("private", ratio, f"latency x{ratio:.2f} with {units} units loading it")
    return SharingVerdict("undetermined", ratio,
                          f"latency x{ratio:.2f}: within the repetitions' spread of the {SHARED_RATIO}x threshold")
