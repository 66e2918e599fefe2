"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): the probes'
page-controlled buffers, because the page size decides what a latency curve shows.

The cache curve uses transparent huge pages (mmap + madvise(MADV_HUGEPAGE), 2 MiB aligned) so TLB
misses don't pose as a cache level; the 4 KiB-page curve asks for MADV_NOHUGEPAGE so the gap
between the two shows the TLB reach. Whether the kernel granted huge pages is read back from
/proc/self/smaps (AnonHugePages), not assumed.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field

import numpy as np

HUGE_PAGE_BYTES = 2 * 1024 * 1024
PAGE_KINDS = ("huge", "4k")


@dataclass
class Buffer:
    """A numpy view on an anonymous mapping; keep the object alive while the view is used."""

    array: np.ndarray
    page_kind: str
    _map: mmap.mmap
    # (first element, length) -> index of the fill pattern those elements hold (bandwidth probes)
    filled: dict = field(default_factory=dict)

    def close(self) -> None:
        self.array = np.empty(0, dtype=self.array.dtype)
        try:
            self._map.close()
        except BufferError:  # a view is still alive somewhere; the GC frees it later
            pass


def span_bytes(size_bytes: int) -> int:
    """What alloc maps for a buffer of this size: whole huge pages plus one of slack to align
    the start (THP only backs aligned 2 MiB ranges that lie entirely inside the mapping)."""
    return -(-int(size_bytes) // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES + HUGE_PAGE_BYTES


def alloc(size_bytes: int, dtype=np.uint64, page_kind: str = "huge") -> Buffer:
    """An uninitialised, page-aligned array of `size_bytes` with the page policy asked for."""
    if page_kind not in PAGE_KINDS:
        raise ValueError(f"page_kind must be one of {PAGE_KINDS}")
    itemsize = np.dtype(dtype).itemsize
    size_bytes = max(itemsize, size_bytes - size_bytes % itemsize)
    mm = mmap.mmap(-1, span_bytes(size_bytes), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_HUGEPAGE" if page_kind == "huge" else "MADV_NOHUGEPAGE", None)
    if advice is not None:
        try:
            mm.madvise(advice)
        except OSError:  # THP disabled or unsupported: the curve is still valid, just 4 KiB
            pass
    raw = np.frombuffer(mm, dtype=np.uint8)
    addr = raw.ctypes.data
    offset = (-addr) % HUGE_PAGE_BYTES if page_kind == "huge" else 0
    arr = raw[offset:offset + size_bytes].view(dtype)
    return Buffer(array=arr, page_kind=page_kind, _map=mm)


def alloc_split(huge_bytes: int, small_bytes: int, dtype=np.float64) -> Buffer:
    """One array whose first `huge_bytes` (rounded up to whole huge pages) ask for huge pages and
    whose remaining `small_bytes` ask for 4 KiB pages. The bandwidth stage's arena: its cached
    working sets stay on huge pages (no TLB miss poses as a cache level), while memory's
    STREAM-sized arrays get the 4 KiB pages STREAM's own arrays get, which a fresh process also
    faults in 2-5x faster (no huge-page compaction on a gigabytes-sized first touch)."""
    itemsize = np.dtype(dtype).itemsize
    huge = -(-int(huge_bytes) // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    total = huge + int(small_bytes)
    total -= total % itemsize
    mm = mmap.mmap(-1, span_bytes(total), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = np.frombuffer(mm, dtype=np.uint8)
    offset = (-raw.ctypes.data) % HUGE_PAGE_BYTES
    for advice, start, length in (("MADV_HUGEPAGE", offset, huge), ("MADV_NOHUGEPAGE", offset + huge, len(raw) - offset - huge)):
        if length > 0 and hasattr(mmap, advice):
            try:
                mm.madvise(getattr(mmap, advice), start, length)
            except OSError:  # THP disabled or unsupported: every page is 4 KiB, still valid
                pass
    arr = raw[offset:offset + total].view(dtype)
    return Buffer(array=arr, page_kind="huge+4k" if huge and small_bytes else ("huge" if huge else "4k"), _map=mm)


def anon_huge_bytes() -> int | None:
    """Bytes of this process backed by transparent huge pages (None if unknown)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
