"""Planning shared by the device scans: geometric size sweeps, the free-memory guard, and
repetition counts. Kept apart from the stage tables so every scan module imports it and none
imports another."""

from __future__ import annotations

import math

import psutil

from memprobe.scan import ScanContext

MEMORY_HEADROOM = 4  # refuse a sweep whose largest buffer is above free memory / this


def sweep_sizes(min_bytes: int, max_bytes: int, per_octave: int, align: int = 64) -> list[int]:
    """Geometric sizes, `per_octave` per doubling, multiples of `align`, no duplicates."""
    n = int(round(math.log2(max_bytes / min_bytes) * per_octave))
    out: list[int] = []
    for k in range(n + 1):
        s = int(round(min_bytes * 2 ** (k / per_octave) / align)) * align
        if not out or s > out[-1]:
            out.append(s)
    return out


def check_memory(size_bytes: int) -> None:
    from memprobe.errors import ResourceError

    free = psutil.virtual_memory().available
    if size_bytes * MEMORY_HEADROOM > free:
        raise ResourceError(
            f"a {size_bytes / 2**20:.0f} MiB buffer needs {MEMORY_HEADROOM}x that free, but only "
            f"{free / 2**20:.0f} MiB is available: use a smaller --max-size")


def repetitions(ctx: ScanContext, default: int, quick: int) -> int:
    """Repetitions per point: the user's, else the default for the mode."""
    return ctx.options.repetitions or (quick if ctx.options.quick else default)
