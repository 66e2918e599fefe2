"""A small hierarchy simulator for inference tests: known capacities and latencies, four kinds
of transition, multiplicative noise. Not a cache model of any one CPU; just the shapes real
curves take (docs/method.md, "Edges", says why each occurs).

The random-replacement edge is not a formula: a cache of RR_LINES lines with random
replacement is simulated access by access (a cyclic walk over W lines, a miss evicting a line
drawn at random), so the tests check inference against the mechanism, not against the model
the inference fits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class SimLevel:
    size_bytes: int
    latency: float
    edge: str = "sharp"  # "sharp" (LRU) | "colour" (LRU sets via random 4 KiB pages) | "random" | "logistic"
    ways: int = 8
    width_oct: float = 0.25  # logistic width, in octaves
    # a shared cache's slice that neighbours take and give back: a share `tail_share` of the
    # time the process holds `tail_factor` times the capacity (a mixture tail toward the next level)
    tail_share: float = 0.0
    tail_factor: float = 3.0


def _poisson_tail_weighted(lam: float, ways: int) -> float:
    """E[N 1(N <= ways)] / E[N] for N ~ Poisson(lam): share of lines in colours that fit."""
    if lam <= 0:
        return 1.0
    pmf, acc = math.exp(-lam), 0.0
    for n in range(0, ways + 1):
        if n > 0:
            pmf *= lam / n
        acc += n * pmf
    return acc / lam


def hit_fraction(level: SimLevel, size_bytes: float) -> float:
    if level.tail_share:
        own = SimLevel(level.size_bytes, level.latency, level.edge, level.ways, level.width_oct)
        big = SimLevel(int(level.size_bytes * level.tail_factor), level.latency, level.edge, level.ways,
                       level.width_oct)
        return ((1 - level.tail_share) * hit_fraction(own, size_bytes)
                + level.tail_share * hit_fraction(big, size_bytes))
    r = size_bytes / level.size_bytes
    if level.edge == "sharp":
        return 1.0 if r <= 1.0 else 0.0
    if level.edge == "colour":
        return _poisson_tail_weighted(level.ways * r, level.ways)
    if level.edge == "random":
        return random_replacement_hits(r)
    if level.edge == "logistic":
        return 1.0 / (1.0 + 2.0 ** (math.log2(r) / level.width_oct))
    raise ValueError(level.edge)


RR_LINES = 512  # lines of the simulated random-replacement cache
RR_GRID = np.exp2(np.arange(0.0, 5.0 + 1e-9, 1 / 32))  # r = W / C where its hit rate is tabled
_RR_TABLE: np.ndarray | None = None


def _simulate_rr(lines: int, ratios: np.ndarray, laps: int, seed: int) -> np.ndarray:
    from numba import njit

    @njit(cache=False)
    def run(lines, ws, laps, seed):
        np.random.seed(seed)
        out = np.empty(len(ws))
        for k in range(len(ws)):
            w = ws[k]
            slot_of = np.full(w, -1)  # where each line of the walk sits in the cache, -1: absent
            held = np.full(lines, -1)  # which line each cache slot holds
            hits = 0
            total = 0
            for lap in range(laps):
                for a in range(w):
                    if slot_of[a] >= 0:
                        if lap >= 2:  # the first laps fill the cache
                            hits += 1
                    else:
                        victim = np.random.randint(0, lines)
                        if held[victim] >= 0:
                            slot_of[held[victim]] = -1
                        held[victim] = a
                        slot_of[a] = victim
                    if lap >= 2:
                        total += 1
            out[k] = hits / total
        return out

    ws = np.maximum(1, np.round(ratios * lines)).astype(np.int64)
    return run(lines, ws, laps, seed)


def random_replacement_hits(r: float) -> float:
    """Hit rate of a cyclic walk over r x C lines through a random-replacement cache of C lines,
    from the simulated table (interpolated in log r)."""
    global _RR_TABLE
    if r <= 1.0:
        return 1.0
    if _RR_TABLE is None:
        _RR_TABLE = _simulate_rr(RR_LINES, RR_GRID, laps=24, seed=1)
    return float(np.interp(math.log2(r), np.log2(RR_GRID), _RR_TABLE, right=_RR_TABLE[-1]))


def latency_curve(levels: list[SimLevel], memory_latency: float, sizes, noise: float = 0.0,
                  seed: int = 0) -> np.ndarray:
    """Latency at each size: each access is served by the nearest level that holds it."""
    rng = np.random.default_rng(seed)
    out = []
    for s in sizes:
        served, lat = 0.0, 0.0
        for lv in levels:
            h = max(hit_fraction(lv, s), served)  # inclusive-ish: a farther level holds more
            lat += (h - served) * lv.latency
            served = h
        lat += (1.0 - served) * memory_latency
        out.append(lat)
    out = np.array(out)
    if noise:
        out *= np.exp(rng.normal(0.0, noise, size=len(out)))
    return out


def geometric_sizes(lo: int, hi: int, per_octave: int = 4) -> np.ndarray:
    n = int(round(math.log2(hi / lo) * per_octave))
    return np.array([lo * 2 ** (k / per_octave) for k in range(n + 1)])


SHAPES = ("sharp", "random", "colour", "logistic")


def random_hierarchy(rng: np.random.Generator) -> tuple[list[SimLevel], float, str]:
    """One hierarchy of a random kind, each level's edge shape drawn on its own: CPU-like
    (two or three levels), GPU-like (a 200+ KiB L1, a 40-60 MiB L2) or big-L1 (Apple-like:
    128 KiB L1, 12 MiB L2). Returns (levels, memory latency, kind)."""
    kind = rng.choice(["cpu2", "cpu3", "gpu", "bigl1"])
    shape = lambda: str(rng.choice(SHAPES))  # noqa: E731
    if kind == "gpu":
        sizes = [int(rng.uniform(200, 256)) << 10, int(rng.uniform(40, 60)) << 20]
        lats = [rng.uniform(30, 45)]
        lats.append(lats[0] * rng.uniform(5, 9))
        mem = lats[-1] * rng.uniform(1.8, 3.0)
    elif kind == "bigl1":
        sizes = [128 << 10, 12 << 20]
        lats = [rng.uniform(0.7, 1.2)]
        lats.append(lats[0] * rng.uniform(4, 8))
        mem = lats[-1] * rng.uniform(10, 20)
    else:
        n = 2 if kind == "cpu2" else 3
        sizes = [int(rng.choice([16, 32, 48, 64])) << 10]
        lats = [rng.uniform(0.7, 2.0)]
        for _ in range(n - 1):
            sizes.append(int(sizes[-1] * rng.uniform(8, 64)))
            lats.append(lats[-1] * rng.uniform(2.5, 5.0))
        mem = lats[-1] * rng.uniform(3, 10)
    levels = [SimLevel(s, lat, shape(), ways=int(rng.choice([8, 16])), width_oct=float(rng.uniform(0.15, 0.4)))
              for s, lat in zip(sizes, lats)]
    return levels, float(mem), str(kind)


def visible(levels: list[SimLevel], memory_latency: float, sizes) -> bool:
    """Every level shows as a plateau on the noiseless curve: >= 3 points within 5 % of its
    latency (broad edges on both sides of a short level can leave only a slope)."""
    clean = latency_curve(levels, memory_latency, sizes)
    return all(np.sum(np.abs(clean / lv.latency - 1) < 0.05) >= 3 for lv in levels)
