"""A small hierarchy simulator for inference tests: known capacities and latencies, three kinds
of transition, multiplicative noise. Not a cache model of any one CPU; just the shapes real
curves take (see memprobe/infer/levels.py for why each shape occurs)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class SimLevel:
    size_bytes: int
    latency: float
    edge: str = "sharp"  # "sharp" (LRU) | "colour" (LRU sets through random 4 KiB pages) | "logistic"
    ways: int = 8
    width_oct: float = 0.25  # logistic width, in octaves


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
    r = size_bytes / level.size_bytes
    if level.edge == "sharp":
        return 1.0 if r <= 1.0 else 0.0
    if level.edge == "colour":
        return _poisson_tail_weighted(level.ways * r, level.ways)
    if level.edge == "logistic":
        return 1.0 / (1.0 + 2.0 ** (math.log2(r) / level.width_oct))
    raise ValueError(level.edge)


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
