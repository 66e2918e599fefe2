"""Stage 3 of the flow (probe -> samples -> **inference** -> result -> report): where a cache
ends, from the shape of the climb between two plateaus.

A working set of W lines cycled through a cache of C lines meets one of a few transitions,
each a hit fraction h(r) of r = W / C (docs/method.md, "Edges"):

- sharp: LRU or pseudo-LRU on a virtually indexed cache; every line fits until r = 1, none after;
- random: random replacement. A line survives the m·W misses between two of its uses with
  probability exp(-m·r), so the hit fraction h = 1 - m solves h = exp(-(1 - h)·r): the climb
  starts at C and is slow after it (half missed only at r = 1.39);
- page-colour: LRU sets filled through randomly placed 4 KiB pages: each set colour gets a
  Poisson number of pages, and the lines of colours holding more than `ways` pages miss, so the
  climb starts well before C and is about half done at it;
- logistic: a free shape for anything else (h = 1 / (1 + r^(1/width)), width in octaves).

The latency between plateaus L_in (inside) and L_out (beyond) is L_out + (L_in - L_out)·h(r),
fitted in log latency (noise is multiplicative). Each model's capacity C is found on a grid of
log2(C) (1/64 octave): every model is one curve per C, so a grid search is exact at its step,
cannot fall into a local minimum, and costs one vectorised pass per model; no optimiser library
is needed for one bounded parameter. The model with the lowest BIC (n·ln(SSE/n) + k·ln(n),
k = parameters: C, and ways or width where the model has one) gives the capacity. The interval
is every C whose fit any model within BIC_STRONG of the best reaches within CHI2_95 of that model's
own best (profile likelihood, σ² from the fit's own residuals): what the data cannot tell apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID_STEP_OCT = 1 / 64  # resolution of the capacity grid
CHI2_95 = 3.84  # chi-square, 1 degree of freedom, 95 %: the profile-likelihood interval
# a BIC difference over 10 is very strong evidence (Kass & Raftery 1995): under it two models
# are not told apart (a shape, a capacity), over it the better one wins (a level kept or dropped)
BIC_STRONG = 10.0
# a point this many sigmas of the curve's noise from a plateau is off it (0.3 % of Gaussian
# noise passes by chance): the band of a plateau and the onset of a climb alike
NOISE_SIGMAS = 3.0
MIN_CLIMB_POINTS = 3  # points a climb needs before its shape, and so C within it, is seen
COLOUR_WAYS = (4, 8, 16)
LOGISTIC_WIDTHS_OCT = tuple(round(0.1 * 1.25 ** k, 3) for k in range(13))  # 0.1 to 1.46 octaves
FREE_SHAPE = "logistic"


def hit_sharp(r: np.ndarray) -> np.ndarray:
    return (r <= 1.0).astype(float)


def hit_random(r: np.ndarray) -> np.ndarray:
    """h = exp(-(1 - h)·r) for r > 1, 1 below; a few Newton steps from h = 1/r (vectorised)."""
    r = np.asarray(r, dtype=float)
    h = np.ones_like(r)
    big = r > 1.0
    if not np.any(big):
        return h
    rb = r[big]
    g = np.clip(1.0 / rb, 1e-12, 1.0 - 1e-9)
    for _ in range(30):
        f = g - np.exp(-(1.0 - g) * rb)
        df = 1.0 - rb * np.exp(-(1.0 - g) * rb)
        step = np.where(np.abs(df) > 1e-12, f / df, 0.0)
        g = np.clip(g - step, 1e-12, 1.0 - 1e-12)
    # near r = 1 the root at h = 1 attracts Newton; the other root is small-m: 1 - 2(r-1)/r^2
    near = rb < 1.02
    g[near] = 1.0 - 2.0 * (rb[near] - 1.0) / rb[near] ** 2
    h[big] = g
    return h


def _poisson_fit_fraction(lam: np.ndarray, ways: int) -> np.ndarray:
    """E[N·1(N <= ways)] / E[N] for N ~ Poisson(lam): the share of lines in colours that fit."""
    lam = np.maximum(np.asarray(lam, dtype=float), 1e-12)
    pmf = np.exp(-lam)
    acc = np.zeros_like(lam)
    for n in range(1, ways + 1):
        pmf = pmf * lam / n
        acc += n * pmf
    return acc / lam


def hit_colour(r: np.ndarray, ways: int) -> np.ndarray:
    return _poisson_fit_fraction(ways * np.asarray(r, dtype=float), ways)


def hit_logistic(r: np.ndarray, width_oct: float) -> np.ndarray:
    return 1.0 / (1.0 + np.power(np.asarray(r, dtype=float), 1.0 / width_oct))


# the models: name -> (number of fitted parameters, [(variant label, hit function)])
MODELS: dict[str, tuple[int, list[tuple[str, object]]]] = {
    "sharp": (1, [("", hit_sharp)]),
    "random": (1, [("", hit_random)]),
    "page-colour": (2, [(f"{w} ways", (lambda r, w=w: hit_colour(r, w))) for w in COLOUR_WAYS]),
    "logistic": (2, [(f"{w:g} oct", (lambda r, w=w: hit_logistic(r, w))) for w in LOGISTIC_WIDTHS_OCT]),
}


@dataclass
class EdgeFit:
    size_bytes: int  # the capacity C of the best model
    interval_bytes: tuple[int, int]  # the capacities the data cannot tell apart
    edge: str  # the best model's name
    variant: str  # its extra parameter ("8 ways", "0.35 oct"), "" for none
    bic: dict[str, float]  # every model's best BIC
    n_points: int
    sse: float = 0.0  # the best model's residual sum of squares (ln latency)
    k: int = 1  # its parameter count


def fit_edge(x: np.ndarray, y: np.ndarray, lat_in: float, lat_out: float,
             c_lo_oct: float, c_hi_oct: float, sigma: float) -> EdgeFit | None:
    """Fit the transition between a plateau at `lat_in` and one at `lat_out` (> lat_in) on the
    points (x = log2 size, y = ln latency); C is searched in [c_lo_oct, c_hi_oct] (log2 bytes).
    `sigma`: the curve's noise in ln latency (from its own repetitions or point-to-point
    scatter); raised to the best fit's residual scatter where the shapes fit worse than that
    (reduced chi-square above 1), so a shape none of the models has widens the interval
    instead of narrowing it. None when fewer than three points lie in the window."""
    if len(x) < 3 or not lat_out > lat_in:
        return None
    # one lattice for every fit (multiples of the step, not offsets from c_lo): where the search
    # window starts cannot move a capacity, and a power of two lies on the grid
    grid = np.arange(math.ceil(c_lo_oct / GRID_STEP_OCT - 1e-9), math.floor(c_hi_oct / GRID_STEP_OCT + 1e-9) + 1) * GRID_STEP_OCT
    if len(grid) == 0:
        return None
    n = len(x)
    # r for every (grid C, point): a (G, n) matrix; each model's prediction is one pass over it
    r = np.exp2(x[None, :] - grid[:, None])
    sse: dict[str, np.ndarray] = {}
    variant_at: dict[str, np.ndarray] = {}
    for name, (_k, variants_of) in MODELS.items():
        prof = np.full(len(grid), np.inf)
        pick = np.zeros(len(grid), dtype=int)
        for v, (_label, h) in enumerate(variants_of):
            pred = np.log(lat_out + (lat_in - lat_out) * h(r))
            e = np.sum((y[None, :] - pred) ** 2, axis=1)
            better = e < prof
            prof = np.where(better, e, prof)
            pick = np.where(better, v, pick)
        sse[name], variant_at[name] = prof, pick
    k_of = {name: k for name, (k, _v) in MODELS.items()}
    best_sse = min(float(p.min()) for p in sse.values())
    dof = max(1, n - 2)
    s2 = max(sigma ** 2, best_sse / dof)
    # BIC with the variance known: chi-square at the best C plus k ln n
    bic = {name: float(p.min()) / s2 + k_of[name] * math.log(n) for name, p in sse.items()}
    best = min(bic, key=bic.get)
    lo, hi = math.inf, -math.inf
    for name, b in bic.items():
        if b - bic[best] > BIC_STRONG:
            continue
        prof = sse[name]
        ok = (prof - prof.min()) / s2 <= CHI2_95
        lo, hi = min(lo, float(grid[ok].min())), max(hi, float(grid[ok].max()))
        if name == FREE_SHAPE:
            # a free shape does not say where in its climb the capacity sits: any replacement
            # policy misses its first lines at or after C (a page-colour cache before it) and
            # half of them by the middle of the climb, so C lies between the climb's start
            # (h = 0.9) and its middle (h = 0.5, the logistic's own C)
            jm = int(np.argmin(prof))
            w = LOGISTIC_WIDTHS_OCT[int(variant_at[name][jm])]
            lo = min(lo, float(grid[jm]) - w * math.log2(9.0))
    j = int(np.argmin(sse[best]))
    v = int(variant_at[best][j])
    label, h = MODELS[best][1][v]
    # the climb of the best fit: where its hit fraction falls from 0.9 to 0.1. With fewer than
    # MIN_CLIMB_POINTS on it the data cannot show the shape, and so where in the climb C sits:
    # the interval takes in the sweep points on either side of the fitted C (between two
    # points any C fits as well). The shapes the data cannot tell apart are already in it
    # (every shape within BIC_STRONG); the whole climb's span on top of them (the rule until
    # December 2026) held the truth no more often on simulated two-points-per-octave sweeps
    # (447/447 either way) at 1.25 octaves' median width against 0.75 (docs/validation.md)
    rr = np.exp2(np.arange(-4.0, 4.0, GRID_STEP_OCT))
    hh = h(rr)
    z_lo = float(grid[j] + np.log2(rr[np.argmax(hh < 0.9)]))
    z_hi = float(grid[j] + np.log2(rr[np.argmax(hh < 0.1)]))
    if np.count_nonzero((x > z_lo) & (x < z_hi)) < MIN_CLIMB_POINTS:
        below, above = x[x <= grid[j]], x[x >= grid[j]]
        lo = min(lo, float(below.max()) if len(below) else float(grid[j]))
        hi = max(hi, float(above.min()) if len(above) else float(grid[j]))
    if best != "page-colour":
        # no replacement policy but page colouring misses a line before the working set
        # outgrows C, so C lies at or past the last point still on the inner plateau and, for
        # a sharp or random edge, no later than the first point off it: the onset bracket,
        # read from the points themselves whatever the fitted shape says
        order = np.argsort(x)
        xo, yo = x[order], y[order]
        off = np.flatnonzero(yo > math.log(lat_in) + NOISE_SIGMAS * math.sqrt(s2))
        if len(off) and off[0] > 0:
            lo = min(lo, float(xo[off[0] - 1]))
            if best != FREE_SHAPE:
                hi = max(hi, float(xo[off[0]]))
    c = float(grid[j])
    return EdgeFit(size_bytes=int(round(2 ** c)),
                   interval_bytes=(int(round(2 ** lo)), int(round(2 ** hi))),
                   edge=best, variant=label, bic=bic, n_points=n,
                   sse=float(sse[best][j]), k=k_of[best])
