"""Stage 1 of the flow (**probe** -> samples -> ...): the streaming kernels, described once.

One table for the CPU probes (`cpu/bandwidth.py`), the GPU probes (`gpu/bandwidth.py`) and the
result: a kernel's name, the arrays it touches, the elements it reads and writes and the FLOPs
it does per iteration, counted as STREAM counts (no write-allocate traffic), as BabelStream's
`bench[]` and likwid's `.ptt` headers do. A backend adds only its implementation of each entry.
"""

from __future__ import annotations

from dataclasses import dataclass

ITEM_BYTES = 8  # float64, as STREAM


@dataclass(frozen=True)
class StreamKernelSpec:
    name: str
    arrays: int  # distinct arrays in the working set (a, b, c in that order)
    reads: int  # elements read per iteration
    writes: int  # elements written per iteration
    flops: int  # per iteration
    stores: str = "cached"  # "streaming": non-temporal stores, run at memory's working set only
    base: str = ""  # a streaming kernel: the cached kernel doing the same work

    @property
    def bytes_per_element(self) -> int:
        """STREAM bytes per iteration: bytes read + bytes written."""
        return (self.reads + self.writes) * ITEM_BYTES

    @property
    def read_bytes(self) -> int:
        return self.reads * ITEM_BYTES

    @property
    def write_bytes(self) -> int:
        return self.writes * ITEM_BYTES


STREAM_KERNELS: tuple[StreamKernelSpec, ...] = (
    #                name        arrays reads writes flops
    StreamKernelSpec("read", 1, 1, 0, 1),  # s += a[i]
    StreamKernelSpec("write", 1, 0, 1, 0),  # a[i] = s
    StreamKernelSpec("copy", 2, 1, 1, 0),  # a[i] = b[i]
    StreamKernelSpec("triad", 3, 2, 1, 2),  # a[i] = b[i] + s*c[i]
    StreamKernelSpec("write_nt", 1, 0, 1, 0, "streaming", "write"),
    StreamKernelSpec("copy_nt", 2, 1, 1, 0, "streaming", "copy"),
    StreamKernelSpec("triad_nt", 3, 2, 1, 2, "streaming", "triad"),
)
CACHED_KERNEL_NAMES = tuple(k.name for k in STREAM_KERNELS if k.stores == "cached")


def stream_kernel(name: str) -> StreamKernelSpec:
    for k in STREAM_KERNELS:
        if k.name == name:
            return k
    raise KeyError(f"unknown streaming kernel {name!r}; known: {', '.join(k.name for k in STREAM_KERNELS)}")
