"""Stage 3 of the flow (probe -> samples -> **inference** -> result -> report).

Levels from a latency curve: plateaus of latency against log(size), each boundary where the
curve has climbed 40 % of the way to the next plateau. Pure: only the curve is read, never the
declared sizes, so the same rules serve CPU and GPU scans and `memprobe infer`.

The steps, numbered as in docs/method.md ("How levels are inferred", with the reasons; the
figures behind them are in docs/validation.md): 1. work in log2(size), ln(latency); 2. smooth
with a running median; 3. plateaus by band segmentation, shoulders on sparse curves; 4. merge
neighbours within 25 % and small steps; 5. boundary at 40 % of the gap; 6. the last plateau is
main memory, or the curve never reached it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from memprobe.infer.edges import BIC_STRONG, NOISE_SIGMAS, EdgeFit, fit_edge
from memprobe.result import Code, ScanWarning

# The named numbers, each with the physics behind it (docs/method.md, "How levels are inferred");
# the fit's own (BIC_STRONG, NOISE_SIGMAS, MIN_CLIMB_POINTS) are in edges.py.
# a level is flat over at least 0.4 octave: a cache at least doubles its predecessor's capacity,
# and its two edges take no more than 0.6 octave of that
MIN_PLATEAU_OCT = 0.4
# the running median spans the shortest plateau (and at least one neighbour each side): it can
# neither flatten a level away nor join two
SMOOTH_HALF_WIDTH_OCT = MIN_PLATEAU_OCT / 2
# a plateau's band is never under +-10 %: the pages one size happens to get move a chase that much
BAND_MIN = math.log(1.10)
# a level's hit latency is at least 1.25x the one before (no published hierarchy has less):
# two plateaus closer than that are one level seen twice
MERGE_RATIO = 1.25
# a change under half of the next one (in log latency) and under 1.6x is part of that next
# climb (a TLB miss's page walk, the first overfull page colours), not a level of its own: the
# same fraction tells a shoulder's slope from the climbs around it
SMALL_STEP_FRACTION = 1 / 2
SMALL_STEP_MAX_RATIO = 1.6
# a shoulder is a sloped plateau: twice a flat one's span, as its slope is measured besides its level
SHOULDER_MIN_OCT = 2 * MIN_PLATEAU_OCT
# ln latency: a timer-limited chase repeats to about 1 %, however quiet the curve
NOISE_FLOOR = 0.01
# a lone point's latency moves with the pages its buffer happens to get, as far as a plateau's
# band allows (BAND_MIN, three sigmas of it): a level seen as one point (a sparse sweep's) must
# stand out of the climb around it by more than that
POINT_SCATTER = BAND_MIN / NOISE_SIGMAS
# resolution, not a threshold: a denser curve is binned to this for the plateau search (the edge
# fit uses every point)
BIN_OCT = 1 / 16
# a flag, not inference: points on one plateau agree within 15 % unless the run was disturbed
UNSTABLE_SPREAD = 0.15
# a step is a TLB's reach when huge pages take away more than this share of it: the page walk
# is then most of the step (a cache's step stays whole on huge pages, whatever the TLB does)
TLB_SHARE = 1 / 2
# ns: a page pair's values are printed to 0.1 ns (tinymembench), so a difference of two rises
# (four printed values) is known to 2 x 0.1 ns
PAGES_RESOLUTION_NS = 0.2


class InferenceError(ValueError):
    """A curve that cannot be read as a hierarchy (too few points, non-positive values)."""


@dataclass
class InferredLevel:
    name: str
    size_bytes: int | None  # None for main memory
    latency: float  # in the curve's unit (ns or cycles)
    spread: float  # relative spread of the points on the plateau (p90-p10)/median
    unstable: bool
    size_range_bytes: tuple[int, int] | None  # the capacities the curve cannot tell apart
    plateau_bytes: tuple[int, int]  # first and last size on the plateau
    n_points: int
    edge: str | None = None  # the transition shape that fitted best (edges.py), None for memory
    # (code, text) for what the curve leaves open about this level (a mixture tail, cache or TLB)
    notes: list[tuple[Code, str]] = field(default_factory=list)


@dataclass
class Hierarchy:
    unit: str
    levels: list[InferredLevel]  # nearest first; the last is main memory
    memory_reached: bool
    noise: float  # estimated relative point-to-point noise of the curve
    warnings: list[ScanWarning] = field(default_factory=list)

    @property
    def caches(self) -> list[InferredLevel]:
        return self.levels[:-1]


def _prepare(size_bytes, latency, samples=None) -> tuple[np.ndarray, np.ndarray, list[list[float]] | None]:
    s = np.asarray(size_bytes, dtype=float)
    v = np.asarray(latency, dtype=float)
    if s.shape != v.shape or s.ndim != 1:
        raise InferenceError("sizes and latencies must be two lists of the same length")
    if samples is not None and len(samples) != len(s):
        raise InferenceError("samples must hold one list per size")
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    if samples is not None:
        samples = [[float(q) for q in g if math.isfinite(q)] for g, keep in zip(samples, ok) if keep]
    if np.any(s <= 0) or np.any(v <= 0):
        raise InferenceError("sizes and latencies must be positive")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    if samples is not None:
        samples = [samples[i] for i in order]
    # repeated sizes: keep their median (and pool their samples)
    uniq, idx = np.unique(s, return_index=True)
    if len(uniq) != len(s):
        groups = np.split(v, idx[1:])
        if samples is not None:
            bounds = list(idx) + [len(s)]
            samples = [sum(samples[a:b], []) for a, b in zip(bounds, bounds[1:])]
        s, v = uniq, np.array([np.median(g) for g in groups])
    if len(s) < 4:
        raise InferenceError(f"a curve needs at least 4 distinct sizes to show levels, got {len(s)}")
    return s, v, samples


def _running_median(x: np.ndarray, y: np.ndarray, half: float) -> np.ndarray:
    out = np.empty_like(y)
    for i in range(len(x)):
        m = np.abs(x - x[i]) <= half + 1e-9
        out[i] = np.median(y[m])
    return out


def _noise(y: np.ndarray) -> float:
    """Robust point-to-point noise from the first differences d: the lower quartile of |d|,
    scaled to one point's sigma (for Gaussian noise |d| is half-normal with scale sigma·sqrt(2),
    whose lower quartile is 0.3186 of that), or of |d - median d| where that is smaller (a
    steady slope, whose differences are all alike, is not noise). The lower quartile, not the
    median: on a sparse sweep (one point per octave) most neighbours straddle an edge, and the
    median difference is a step, not noise; a quarter of the differences lie on plateaus on any
    curve that shows a hierarchy (docs/method.md, step 3)."""
    d = np.diff(y)
    if len(d) < 3:
        return 0.0
    q = min(np.quantile(np.abs(d), 0.25), np.quantile(np.abs(d - np.median(d)), 0.25))
    return float(q / (0.3186 * math.sqrt(2)))


def _flat_runs(x: np.ndarray, ys: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """Plateaus: the widest windows whose smoothed values fit in a band of `tol`, taken longest
    first and never overlapping. (Scanning left to right instead lets a window that starts one
    point early swallow the first point of a short plateau and lose the level.)"""
    n = len(x)
    cands = []
    for i in range(n):
        lo = hi = ys[i]
        j = i
        while j + 1 < n and max(hi, ys[j + 1]) - min(lo, ys[j + 1]) <= tol:
            j += 1
            lo, hi = min(lo, ys[j]), max(hi, ys[j])
        cands.append((i, j))
    cands.sort(key=lambda r: (-(x[r[1]] - x[r[0]]), r[0]))
    used = np.zeros(n, dtype=bool)
    runs = []
    for a, b in cands:
        while a <= b and used[a]:  # a neighbour took the ends: keep what is left of the window
            a += 1
        while b >= a and used[b]:
            b -= 1
        if b <= a or used[a:b + 1].any() or x[b] - x[a] < MIN_PLATEAU_OCT - 1e-9:
            continue
        used[a:b + 1] = True
        runs.append((a, b))
    return sorted(runs)


def _shoulders(x: np.ndarray, y: np.ndarray, runs: list[tuple[int, int]], dense: bool) -> list[tuple[int, int]]:
    """A level too sloped for the plateau band still bends the curve: between two plateaus, a
    stretch whose rise per octave is under SMALL_STEP_FRACTION of the rise into it and out of it, sitting at least
    MERGE_RATIO clear of both, is a level seen as a shoulder (a VM's L3 slice that climbs from 12
    to 22 ns between 1 and 5 MiB; the Raspberry Pi 5's 2 MiB L3, 17 and 24 ns on a one point per
    octave curve). On a sparse curve the stretch is two neighbouring points; on a dense one
    (smoothed) at least SHOULDER_MIN_OCT. Not after the last plateau: a climbing tail has nothing
    above it to be clear of."""
    out: list[tuple[int, int]] = []
    gap_merge = math.log(MERGE_RATIO)
    for (a0, lo), (hi, b1) in zip(runs, runs[1:]):
        below = float(np.median(y[a0:lo + 1]))
        above = float(np.median(y[hi:b1 + 1]))
        best = None
        for i in range(lo + 1, hi - 1):
            for j in range(i + 1, hi):
                span = x[j] - x[i]
                if (not dense and j != i + 1) or (dense and span < SHOULDER_MIN_OCT - 1e-9):
                    continue
                if dense:
                    slope_in = (y[i] - y[lo]) / (x[i] - x[lo])
                    slope_out = (y[hi] - y[j]) / (x[hi] - x[j])
                else:
                    slope_in = (y[i] - y[i - 1]) / (x[i] - x[i - 1])
                    slope_out = (y[j + 1] - y[j]) / (x[j + 1] - x[j])
                slope = (y[j] - y[i]) / span
                clear = y[i] - below >= gap_merge and above - y[j] >= gap_merge
                if clear and 0 <= slope < SMALL_STEP_FRACTION * min(slope_in, slope_out):
                    key = (slope, -span)
                    if best is None or key < best[0]:
                        best = (key, i, j)
        if best is not None:
            out.append((best[1], best[2]))
    return out


def _bin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A curve denser than BIN_OCT, as the median of each BIN_OCT-wide bin (in log2 size): the
    plateau search then costs the same for 100 points as for 20,000 (a fleet's or another
    tool's fine sweep). The edges are fitted on every point."""
    if len(x) < 2 or float(np.median(np.diff(x))) >= BIN_OCT:
        return x, y
    keys = np.floor((x - x[0]) / BIN_OCT).astype(int)
    cut = np.flatnonzero(np.diff(keys)) + 1
    return (np.array([np.median(g) for g in np.split(x, cut)]),
            np.array([np.median(g) for g in np.split(y, cut)]))


def infer_levels(size_bytes, latency, unit: str = "ns", samples=None, pages=None) -> Hierarchy:
    """Levels of a latency curve (sizes in bytes, latency in `unit`), nearest first.

    `samples`, where the curve has them, are each size's repetitions (one list per size; the
    latency is a statistic of them, the lower quartile on memprobe's CPU curve). Only the
    mixture-tail rule reads them (docs/method.md, step 6): whether a shelf next to memory was
    served at its points both faster than itself and by memory. Without them that rule reads
    the curve alone.

    `pages`, where the curve's file has them (sbcbench.PagePair: the same core's latency with
    4 KiB and with huge pages), tell a TLB's reach from a cache (`_tlb_steps`); without them a
    small step says it may be either (`_note_small_steps`)."""
    s_raw, v_raw, samples = _prepare(size_bytes, latency, samples)
    x_raw, y_raw = np.log2(s_raw), np.log(v_raw)
    x, y = _bin(x_raw, y_raw)
    s = np.exp2(x)
    spacing = float(np.median(np.diff(x)))
    raw_spacing = float(np.median(np.diff(x_raw)))
    # >= 1.5 points per octave: a median over at least one neighbour each side, so a single
    # noisy point can neither make a plateau nor break one; sparser curves are left as they are
    dense = spacing < 0.67
    ys = _running_median(x, y, max(SMOOTH_HALF_WIDTH_OCT, 1.01 * spacing)) if dense else y.copy()
    noise = _noise(y_raw)
    tol = max(BAND_MIN, NOISE_SIGMAS * _noise(ys))
    runs = _flat_runs(x, ys, tol)
    if runs:
        runs = sorted(runs + _shoulders(x, ys if dense else y, runs, dense))
    warnings: list[ScanWarning] = []
    if not runs:
        # no plateau at all: a single level spanning the curve
        runs = [(0, len(x) - 1)]
        warnings.append(ScanWarning(Code.INFERENCE, "no flat region found: the curve is read as a single level"))

    # merge neighbours that are the same level seen twice (gradual edge, TLB step)
    merged: list[list[int]] = [list(runs[0])]
    for a, b in runs[1:]:
        pa, pb = merged[-1]
        if math.exp(abs(np.median(y[a:b + 1]) - np.median(y[pa:pb + 1]))) < MERGE_RATIO:
            merged[-1][1] = b
        else:
            merged.append([a, b])

    plateaus = [(a, b, float(np.median(y[a:b + 1]))) for a, b in merged]
    # a plateau lower than the one before it is noise on a slope, not a level
    mono: list[tuple[int, int, float]] = []
    for p in plateaus:
        if mono and p[2] <= mono[-1][2]:
            a0, _, _ = mono.pop()
            p = (a0, p[1], float(np.median(y[a0:p[1] + 1])))
        mono.append(p)
    plateaus = _merge_small_steps(mono, dense)
    plateaus = _keep_supported(x, y, plateaus, max(noise, NOISE_FLOOR))
    last_a, last_b, last_y = plateaus[-1]
    # a creep after the last plateau smaller than the merge ratio is that level still (page
    # walks under nested paging keep adding a little); a real climb to the next level is more
    memory_reached = (last_b >= len(x) - 1
                      or float(np.max(ys[last_b:])) - last_y <= max(tol, math.log(MERGE_RATIO)))
    if not dense and memory_reached:
        plateaus = _insert_supported(x, y, plateaus, max(noise, POINT_SCATTER))
    elif not dense:
        # a curve that ends before memory: its last point stands for the next level (whose
        # latency is at least that), so a level seen as one point before it is found as one
        # between two plateaus is (`_insert_supported`, open_end)
        end = (len(x) - 1, len(x) - 1, float(y[-1]))
        plateaus = _insert_supported(x, y, plateaus + [end], max(noise, POINT_SCATTER), open_end=True)[:-1]
    tails = {}
    if memory_reached:
        plateaus, tails = _mixture_tail(x, y, plateaus, max(noise, NOISE_FLOOR), x_raw, samples)
    if not memory_reached:
        warnings.append(ScanWarning(Code.MEMORY_NOT_REACHED,
                                    "the curve still climbs at its largest size: main memory was not "
                                    "reached; its latency is the last point's"))

    levels: list[InferredLevel] = []
    cache_plateaus = plateaus if not memory_reached else plateaus[:-1]
    for k, (a, b, yk) in enumerate(cache_plateaus):
        nxt = plateaus[k + 1] if k + 1 < len(plateaus) else (len(x) - 1, len(x) - 1, float(y[-1]))
        first, tail, in_time = tails.get(k, (None, None, False))
        fit = _fit_edge(x_raw, y_raw, x, (a, b, yk), first or nxt, max(noise, NOISE_FLOOR))
        if fit is not None:
            size, rng, edge = fit.size_bytes, fit.interval_bytes, fit.edge
        else:  # too few points between the plateaus to fit a shape: the sweep points around it
            j = min(b + 1, len(x) - 1)
            size, rng, edge = int(round(2 ** ((x[b] + x[j]) / 2))), (int(s[b]), int(s[j])), "bracket"
        if not dense and tail is None:
            size, rng = _sparse_bracket(x, y, b, nxt[2], size, tol, memory_reached)
        elif fit is not None:
            # a fitted C is placed between sweep points: the interval is at least the sweep's
            # step around it (a quarter octave on memprobe's own four points per octave), plus
            # what the edge shape leaves open
            half = raw_spacing / 2
            rng = (min(rng[0], int(round(size * 2 ** -half))), max(rng[1], int(round(size * 2 ** half))))
        level = _level(f"L{k + 1}", size, x_raw, y_raw, x[a], x[b], rng, edge)
        if tail is not None:
            # the capacity is where the climb starts (what the process holds every time); the
            # interval runs on to where the tail meets the next level
            far = _fit_edge(x_raw, y_raw, x, tail, nxt, max(noise, NOISE_FLOOR))
            hi = far.interval_bytes[1] if far is not None else int(s[min(tail[1] + 1, len(x) - 1)])
            level.size_range_bytes = (min(rng[0], size), max(rng[1], hi))
            why = ("its samples there read both faster than that and the next level's latency: what this "
                   "level held changed between passes (a shared cache's slice that neighbours take and give "
                   "back)" if in_time else
                   "a mix of this level's hits and the next level's (a shared cache's slice, or a partition "
                   "farther away)")
            level.notes.append((Code.MIXTURE_TAIL,
                                f"the climb past {_fmt(size)} pauses near {math.exp(first[2]):.3g} {unit} up to "
                                f"{_fmt(2 ** x[tail[1]])}: {why}, not a level of its own; capacity "
                                f"{_fmt(level.size_range_bytes[0])} - {_fmt(level.size_range_bytes[1])}"))
        levels.append(level)
    if memory_reached:
        a, b, _ = plateaus[-1]
        levels.append(_level("memory", None, x_raw, y_raw, x[a], x[b], None, None))
    else:
        levels.append(_level("memory", None, x_raw, y_raw, x_raw[-1], x_raw[-1], None, None))
    kept: dict[int, str] = {}
    if pages is not None:
        levels = _tlb_steps(levels, pages, unit, x_raw, y_raw, kept)
    _note_small_steps(levels, unit, kept)
    return Hierarchy(unit=unit, levels=levels, memory_reached=memory_reached, noise=noise,
                     warnings=warnings)


def _fit_edge(x_raw: np.ndarray, y_raw: np.ndarray, x: np.ndarray, here: tuple[int, int, float],
              nxt: tuple[int, int, float], sigma: float) -> EdgeFit | None:
    """The edge between plateau `here` and `nxt` (index ranges on the binned curve): fitted on
    every raw point from the middle of one to the middle of the other (edges.py)."""
    a, b, y_in = here
    a2, b2, y_out = nxt
    lo_x, hi_x = (x[a] + x[b]) / 2, (x[a2] + x[b2]) / 2
    if b2 == a2 == len(x) - 1:  # memory not reached: the window runs to the curve's end
        hi_x = x[-1]
    sel = (x_raw >= lo_x) & (x_raw <= hi_x)
    # the running median moves a plateau's ends by up to its half-width: C is searched that far
    # past the gap between the two plateaus
    c_lo = x[b] - SMOOTH_HALF_WIDTH_OCT
    c_hi = min(x[a2], x[-1]) + SMOOTH_HALF_WIDTH_OCT
    return fit_edge(x_raw[sel], y_raw[sel], math.exp(y_in), math.exp(y_out), c_lo, c_hi, sigma)


def _sparse_bracket(x: np.ndarray, y: np.ndarray, b: int, y_out: float, size: int,
                    tol: float, reached: bool = True) -> tuple[int, tuple[int, int]]:
    """On a sparse sweep (under 1.5 points per octave), the capacities the points allow
    (docs/method.md, step 5), for a climb that starts at C (LRU, random replacement):
    - at least the last point still on the level: a point is on it when it is within the
      plateau band `tol` of the plateau's last point, or within MERGE_RATIO of it (no next
      level is that close: a TLB miss, a few overfull page colours);
    - at least the lines the level still holds past it: a point at L between the level's L_in
      and the next level's L_out is a fraction h = (L_out - L) / (L_out - L_in) of hits, and a
      cache holds no more than C lines, so C >= h x W at every W;
    - below the first point off the level, and below the point that held those lines.
    A climb that starts between two neighbouring points thus has that octave as its interval,
    no wider. On a curve that ends before memory (`reached` false) the next level's latency is
    only known to be at least the last point's, so every h is a lower bound; where no point
    before the last is yet half-way to it, the points that would bound C from above lie past
    the curve, and the one holding the most lines may be the last: the interval runs to it. The one assumption: a page-coloured cache whose climb starts well before C (a
    few ways, random 4 KiB pages) reads low, by up to an octave (docs/validation.md gives the
    simulated coverage). The size is the fitted C where it falls inside, else the middle."""
    n = len(x)
    j = b + 1
    while j < n and y[j] - y[b] <= max(tol, math.log(MERGE_RATIO)) and y[j] - y[j - 1] <= tol:
        j += 1
    if j >= n:
        return size, (int(round(2 ** x[b])), int(round(2 ** x[-1])))
    l_in, l_out = math.exp(y[b]), math.exp(y_out)
    lo, hi = x[j - 1], x[j]
    if l_out > l_in:
        k = j
        while k < n - 1 and y[k] < math.log((l_in + l_out) / 2):  # the points until half done
            k += 1
        held = [math.log2(max((l_out - math.exp(y[i])) / (l_out - l_in), 1e-9)) + x[i] for i in range(j, k + 1)]
        i_max = int(np.argmax(held))
        if held[i_max] > lo:
            lo, hi = held[i_max], x[j + i_max]
        if not reached and k == n - 1:
            hi = x[-1]
    c = math.log2(size)
    if not lo <= c <= hi:
        c = (lo + hi) / 2
    return int(round(2 ** c)), (int(round(2 ** lo)), int(round(2 ** hi)))


def _fmt(b: float) -> str:
    for u, m in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= m:
            return f"{b / m:.3g} {u}"
    return f"{int(b)} B"


def _mixture_tail(x: np.ndarray, y: np.ndarray, plateaus: list[tuple[int, int, float]], sigma: float,
                  x_raw: np.ndarray | None = None, samples: list[list[float]] | None = None):
    """The plateau just before memory, when a mix of the cache before it and memory explains it
    (docs/method.md, step 7).

    A point at latency L between a cache at L_in and memory at L_out is, read as a mix, a
    fraction h = (L_out - L) / (L_out - L_in) of hits in that cache, which then holds h x W of a
    W-byte working set. No cache holds more than its capacity: where the lines held along the
    plateau (their median) stay within the cache's fitted capacity C, the plateau is a shelf of
    that cache's own climb to memory (a VM's slice of a shared L3 that neighbours take and give
    back, a partitioned cache's far half), and it joins that cache as its tail: one level, its
    capacity where the climb starts, its interval on to where the tail meets memory, noted
    `mixture_tail`. A real level holds far more than the cache before it (on its plateau h is
    near 1 and W well past C): an SLC, an eDRAM or Infinity Cache. Only next to memory: between
    two caches a shelf is the small-step rule's (step 4).

    The bound h x W <= C holds for a mix of lines at one moment. A mix in time (the cache held
    the whole working set in one pass and none of it in another: a shared L3's slice that moves
    between passes) breaks it, as C is then the capacity of one moment only; the curve's lower
    quartile of such a point lands anywhere between the two latencies. Where each size's samples
    are known, that shows directly (`_mixed_in_time`), and the shelf joins the cache as well.
    Returns the plateaus left and {index of the cache: (the plateau folded into it, the same,
    whether the samples showed a mix in time)}."""
    if len(plateaus) < 3:
        return plateaus, {}
    before, here, after = plateaus[-3], plateaus[-2], plateaus[-1]
    l_out = math.exp(after[2])
    if x_raw is not None and _mixed_in_time(x, x_raw, samples, here, l_out):
        return plateaus[:-2] + [after], {len(plateaus) - 3: (here, here, True)}
    # on the binned curve, as the count is decided at the plateau search's resolution
    fit = _fit_edge(x, y, x, before, here, sigma)
    if fit is None:
        return plateaus, {}
    l_in, l_out = math.exp(before[2]), math.exp(after[2])
    sel = slice(here[0], here[1] + 1)
    held = np.clip((l_out - np.exp(y[sel])) / (l_out - l_in), 0.0, 1.0) * np.exp2(x[sel])
    if not len(held) or float(np.median(held)) > fit.size_bytes:
        return plateaus, {}
    return plateaus[:-2] + [after], {len(plateaus) - 3: (here, here, False)}


def _mixed_in_time(x: np.ndarray, x_raw: np.ndarray, samples: list[list[float]] | None,
                   here: tuple[int, int, float], l_out: float) -> bool:
    """Whether a shelf next to memory is, at every one of its points, a statistic of a mix in
    time rather than a level's latency: the point's samples reach below the shelf's latency by
    more than MERGE_RATIO (no level's own samples do: a faster level served them, at that moment
    holding the whole set) and up to within MERGE_RATIO of memory's (those found the set in no
    cache). A level's samples gather at its latency; a disturbed pass only adds time, it never
    reads faster than the level. At least two samples a point, and every point of the shelf."""
    if samples is None:
        return False
    l_here = math.exp(here[2])
    pts = np.flatnonzero((x_raw >= x[here[0]] - 1e-9) & (x_raw <= x[here[1]] + 1e-9))
    if not len(pts):
        return False
    for i in pts:
        g = samples[i]
        if len(g) < 2 or min(g) * MERGE_RATIO > l_here or max(g) * MERGE_RATIO < l_out:
            return False
    return True


def _keep_supported(x: np.ndarray, y: np.ndarray, plateaus: list[tuple[int, int, float]],
                    sigma: float) -> list[tuple[int, int, float]]:
    """Model selection for the count: an interior plateau stays a level only if the curve from
    the plateau before it to the one after is explained better with it (two fitted edges and its
    latency) than without it (one fitted edge straight across), by more than BIC_STRONG in BIC
    (chi-square with the curve's noise, plus k ln n). The weakest is dropped first, until every
    interior plateau earns its place."""
    out = list(plateaus)
    while len(out) >= 3:
        worst, worst_k = None, -1
        for k in range(1, len(out) - 1):
            before, here, after = out[k - 1], out[k], out[k + 1]
            # on the binned curve: the count is decided at the plateau search's resolution
            gain = _bic_gain(x, y, before, here, after, sigma)
            if gain is None:
                continue
            if gain < BIC_STRONG and (worst is None or gain < worst):
                worst, worst_k = gain, k
        if worst is None:
            break
        a0, _, y0 = out[worst_k - 1]
        out[worst_k - 1:worst_k + 1] = [(a0, out[worst_k][1], y0)]
    return out


def _bic_gain(x: np.ndarray, y: np.ndarray, before, here, after, sigma: float) -> float | None:
    """BIC gain of the curve from `before` to `after` (plateaus as (first, last, ln latency))
    explained with the level `here` between them (two fitted edges and its latency) over one
    fitted edge straight across (chi-square with the curve's noise, plus k ln n); None when a
    window holds too few points to fit."""
    lo_x, hi_x = (x[before[0]] + x[before[1]]) / 2, (x[after[0]] + x[after[1]]) / 2
    n = int(np.count_nonzero((x >= lo_x) & (x <= hi_x)))
    f1 = _fit_edge(x, y, x, before, here, sigma)
    f2 = _fit_edge(x, y, x, here, after, sigma)
    f0 = _fit_edge(x, y, x, before, after, sigma)
    if f1 is None or f2 is None or f0 is None or n < 3:
        return None
    s2 = sigma ** 2
    return (f0.sse / s2 + f0.k * math.log(n)) - ((f1.sse + f2.sse) / s2 + (f1.k + f2.k + 1) * math.log(n))


def _insert_supported(x: np.ndarray, y: np.ndarray, plateaus: list[tuple[int, int, float]],
                      sigma: float, open_end: bool = False) -> list[tuple[int, int, float]]:
    """The same comparison the other way, on a sparse sweep only: there a level can show as one
    point between two climbs (a one-point-per-octave sweep's L3 between its L2 and memory),
    while on a denser one a level is a plateau the band search finds and a lone point is a point
    on a climb. The point joins the count when it gains more than BIC_STRONG and its steps up and
    down are steps a level makes (at least MERGE_RATIO each, and not a small step before a big
    one: `_merge_small_steps`). With `open_end` the last plateau is a curve's last point, one
    that never reached memory: only a lower bound of the next level's latency, so a point whose
    step on to it is under SMALL_STEP_FRACTION of its step up from the level before is the same
    small step the other way round, a creep of one climb (memory's latency still rising through
    page walks on a 4 KiB-page curve), not a level between two."""
    out = list(plateaus)
    k = 0
    while k < len(out) - 1:
        before, after = out[k], out[k + 1]
        best, best_gain = None, BIC_STRONG
        for i in range(before[1] + 1, after[0]):
            step_in, step_out = y[i] - before[2], after[2] - y[i]
            if min(step_in, step_out) < math.log(MERGE_RATIO):
                continue
            if step_in < min(SMALL_STEP_FRACTION * step_out, math.log(SMALL_STEP_MAX_RATIO)):
                continue
            if open_end and k == len(out) - 2 and step_out < SMALL_STEP_FRACTION * step_in:
                continue
            gain = _bic_gain(x, y, before, (i, i, float(y[i])), after, sigma)
            if gain is not None and gain > best_gain:
                best, best_gain = (i, i, float(y[i])), gain
        if best is not None:
            out.insert(k + 1, best)
            k += 1
        k += 1
    return out


def _merge_small_steps(plateaus: list[tuple[int, int, float]], dense: bool) -> list[tuple[int, int, float]]:
    """A plateau whose step up from the one before is under SMALL_STEP_MAX_RATIO and under
    SMALL_STEP_FRACTION of its own step to the next (in log latency) joins the one before,
    keeping that one's latency, on a dense sweep and wherever it is one point: the start of a
    soft edge (a few overfull page colours: memprobe's huge-page curve has no TLB step), not a
    level. On a sparse sweep (one point per octave) two points or more at such a step span an
    octave and are a level (an in-order core's L2 beside an L3 only 1.5x slower, or a TLB's
    reach on a 4 KiB-page curve), and the level before says it may be either
    (`_note_small_steps`; docs/method.md, step 4)."""
    out = list(plateaus)
    k = 1
    while k < len(out) - 1:
        step_in = out[k][2] - out[k - 1][2]
        step_out = out[k + 1][2] - out[k][2]
        if ((dense or out[k][1] - out[k][0] < 1)
                and step_in < min(SMALL_STEP_FRACTION * step_out, math.log(SMALL_STEP_MAX_RATIO))):
            a, _, yk = out[k - 1]
            out[k - 1:k + 1] = [(a, out[k][1], yk)]
        else:
            k += 1
    return out


def _tlb_steps(levels: list[InferredLevel], pages, unit: str, x_raw: np.ndarray,
               y_raw: np.ndarray, kept: dict[int, str]) -> list[InferredLevel]:
    """A step between two caches that the same core's huge-page run does not have is a TLB's
    reach, not a cache (docs/method.md, step 4): across the sizes from the end of the level
    before the step to the end of the level after it, the page pair's 4 KiB-page latency rises
    by R and its huge-page latency by less than TLB_SHARE x R (the rest is the page walk a
    4 KiB page adds where the TLB no longer covers the set). A cache's step does not depend on
    the page size, so it stays on both curves. The two levels are then one cache: its capacity
    is the later edge's, its latency the level before the step (a hit without a page walk), and
    it says where the page walk starts. Steps outside the pair's sizes, and steps into memory,
    are left as they are. `kept` gets, by id of the level before it, what the pair says of a
    step it keeps (for `_note_small_steps`)."""
    xs = np.log2(np.asarray(pages.size_bytes, dtype=float))
    small, huge = np.asarray(pages.small, dtype=float), np.asarray(pages.huge, dtype=float)
    out = list(levels)
    k = 0
    while k + 2 < len(out):  # out[k + 1] a cache, not memory
        here, nxt = out[k], out[k + 1]
        lo, hi = math.log2(here.plateau_bytes[1]), math.log2(nxt.plateau_bytes[1])
        if not (xs[0] - 1e-9 <= lo < hi <= xs[-1] + 1e-9):
            k += 1
            continue
        rise_small = float(np.interp(hi, xs, small) - np.interp(lo, xs, small))
        rise_huge = float(np.interp(hi, xs, huge) - np.interp(lo, xs, huge))
        if rise_small - rise_huge <= PAGES_RESOLUTION_NS or rise_huge >= TLB_SHARE * rise_small:
            kept[id(here)] = (f"the same core's huge-page run keeps the step ({rise_huge:.2g} of "
                              f"{rise_small:.2g} ns): a cache's capacity, or the reach of a TLB that "
                              "holds a huge page as 4 KiB entries; the pair cannot tell which")
            k += 1
            continue
        merged = _level(here.name, nxt.size_bytes, x_raw, y_raw, math.log2(here.plateau_bytes[0]),
                        math.log2(here.plateau_bytes[1]), nxt.size_range_bytes, nxt.edge)
        merged.plateau_bytes = (here.plateau_bytes[0], nxt.plateau_bytes[1])
        merged.notes = here.notes + nxt.notes + [(
            Code.TLB_STEP,
            f"the step to {nxt.latency:.3g} {unit} past {_fmt(here.plateau_bytes[1])} is a TLB's reach, not a "
            f"cache: the same core's huge-page run rises {rise_huge:.2g} ns across it where the 4 KiB-page "
            f"run rises {rise_small:.2g} ns")]
        out[k:k + 2] = [merged]
    for i, lv in enumerate(out[:-1]):
        lv.name = f"L{i + 1}"
    return out


def _note_small_steps(levels: list[InferredLevel], unit: str, kept: dict[int, str] | None = None) -> None:
    """A cache whose next level is under SMALL_STEP_MAX_RATIO slower: its edge may be the reach
    of a TLB (on a 4 KiB-page curve the next plateau is then the same cache plus a page walk)
    as well as a cache's capacity, and one curve cannot tell them apart (a huge-page curve
    beside it can: a TLB's step is not on it, `_tlb_steps`; where a huge-page run keeps the step,
    `kept` says so in place of this curve's "cannot tell")."""
    for here, nxt in zip(levels, levels[1:]):
        if here.size_bytes is None or nxt.latency / here.latency >= SMALL_STEP_MAX_RATIO:
            continue
        here.notes.append((Code.CACHE_OR_TLB,
                           f"the next level is only {nxt.latency / here.latency:.2f}x slower ({nxt.latency:.3g} {unit}): "
                           f"{_fmt(here.size_bytes)} is a cache's capacity or a TLB's reach (on a 4 KiB-page curve); "
                           + ((kept or {}).get(id(here)) or "this curve cannot tell which")))


def _level(name, size, x_raw, y_raw, x_from, x_to, rng, edge) -> InferredLevel:
    """A level's latency and spread from every raw point on its plateau (x_from..x_to)."""
    sel = (x_raw >= x_from - 1e-9) & (x_raw <= x_to + 1e-9)
    if not np.any(sel):
        sel = np.abs(x_raw - x_from) == np.min(np.abs(x_raw - x_from))
    pts = np.exp(y_raw[sel])
    med = float(np.median(pts))
    spread = float((np.percentile(pts, 90) - np.percentile(pts, 10)) / med) if len(pts) > 1 else 0.0
    return InferredLevel(name=name, size_bytes=size, latency=med, spread=spread,
                         unstable=spread > UNSTABLE_SPREAD, size_range_bytes=rng,
                         plateau_bytes=(int(round(2 ** x_from)), int(round(2 ** x_to))),
                         n_points=int(np.count_nonzero(sel)), edge=edge)

