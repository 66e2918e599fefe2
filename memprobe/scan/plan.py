"""Planning helpers every device scan shares: geometric sweeps and the free-memory guard. The
numbers a scan runs by (the profiles, resolved once from the options) are memprobe/profile.py's.
Planning is not inference: it chooses which sizes to run, never what a level is."""

from __future__ import annotations

import math

import psutil

MEMORY_HEADROOM = 4  # refuse a sweep whose largest buffer is above free memory / this
MiB = 1 << 20


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
