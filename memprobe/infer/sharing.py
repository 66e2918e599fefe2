"""Stage 3 of the flow (... -> **inference** -> ...): is a level private to a core (an SM) or
shared by all of them. Pure: the scans measure, this decides.

On the CPU the evidence is the level's capacity alone against its capacity under the other
cores' load, each fitted with its interval on a sweep across the level's edge
(`judge_sharing_by_capacity`, below). On the GPU, and as the CPU's supporting figure, it is the
latency at one working set, alone and loaded (`judge_sharing`):

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

import numpy as np

from memprobe.infer.edges import EdgeFit, fit_edge

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


@dataclass
class CapacityVerdict:
    """Private or shared from the level's capacity alone and under the other units' load, each
    fitted with its interval (edges.fit_edge)."""

    verdict: str  # "private" | "shared" | "undetermined"
    capacity_alone_bytes: int | None
    interval_alone_bytes: tuple[int, int] | None
    capacity_loaded_bytes: int | None
    interval_loaded_bytes: tuple[int, int] | None
    shared_share_bytes: int | None  # what each unit would keep of a shared level: alone / units
    why: str


def _fit(x: np.ndarray, lat: np.ndarray, lat_out: float, sigma: float) -> EdgeFit | None:
    # the plateau inside is the curve's own first points (load may lift it a little), beyond it
    # the next level's latency from the main curve; C anywhere from half an octave below the
    # sweep to its top
    lat_in = float(np.median(lat[:2]))
    if not lat_out > lat_in * (1 + 2 * sigma):
        return None
    return fit_edge(x, np.log(lat), lat_in, lat_out, float(x[0]) - 0.5, float(x[-1]), sigma)


def judge_sharing_by_capacity(sizes_bytes: list[int], alone: list[float], loaded: list[float], units: int,
                              next_latency: float, sigma: float = NOISE_FLOOR) -> CapacityVerdict:
    """A sweep across a level's edge, on one unit alone and while `units - 1` others chase sets
    of their own of the same size each. A private level keeps its capacity under load; a shared
    one keeps about 1 / units of it (the sets compete for it). The verdict needs the intervals to
    say so: "private" when the capacity under load is inside the one alone and the shared share
    is not; "shared" when the capacity under load lies below the interval alone and its own
    interval reaches the shared share; otherwise "undetermined"."""
    order = np.argsort(np.asarray(sizes_bytes, dtype=float))
    x = np.log2(np.asarray(sizes_bytes, dtype=float)[order])
    a = np.asarray(alone, dtype=float)[order]
    b = np.asarray(loaded, dtype=float)[order]
    fa = _fit(x, a, next_latency, sigma)
    fb = _fit(x, b, next_latency, sigma)
    if fa is None:
        return CapacityVerdict("undetermined", None, None, None, None, None,
                               "the sweep alone shows no edge to compare with")
    share = int(fa.size_bytes / max(units, 1))
    if fb is None:
        return CapacityVerdict("undetermined", fa.size_bytes, fa.interval_bytes, None, None, share,
                               "the sweep under load shows no edge: its latency is lifted across the whole sweep")
    lo_a, hi_a = fa.interval_bytes
    lo_b, hi_b = fb.interval_bytes
    inside_alone = lo_a <= fb.size_bytes <= hi_a
    reaches_share = lo_b <= share * 1.25 and hi_b >= share / 1.25
    text = (f"capacity {fa.size_bytes / 2**10:.0f} KiB alone ({lo_a / 2**10:.0f}-{hi_a / 2**10:.0f}), "
            f"{fb.size_bytes / 2**10:.0f} KiB under load ({lo_b / 2**10:.0f}-{hi_b / 2**10:.0f}); "
            f"a level shared by {units} would keep about {share / 2**10:.0f} KiB")
    if inside_alone and not (lo_b <= share <= hi_b):
        return CapacityVerdict("private", fa.size_bytes, fa.interval_bytes, fb.size_bytes, fb.interval_bytes,
                               share, text)
    if hi_b < lo_a and reaches_share:
        return CapacityVerdict("shared", fa.size_bytes, fa.interval_bytes, fb.size_bytes, fb.interval_bytes,
                               share, text)
    return CapacityVerdict("undetermined", fa.size_bytes, fa.interval_bytes, fb.size_bytes, fb.interval_bytes,
                           share, text + ": the intervals cannot tell")
