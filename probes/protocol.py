"""Stage 1 of the flow (**probe** -> samples -> ...): what every probe is.

A probe is a small object with one job, as BabelStream's `Stream` interface: a name, a backend
("cpu" | "cuda"), `setup(...)` that allocates and lays out its buffers, a blocking `run(...)`
that returns raw samples (ns, seconds or cycles; never a summary), `verify()` apart from timing
that raises ProbeError when the kernel computed something wrong, and `close()` that frees what
setup took. One place outside the probes (memprobe/scan/) turns samples into ns, GB/s or FLOP/s.
`PROBES` lists every probe class, so a test holds each to this protocol.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class ProbeError(AssertionError):
    """A probe's own check found a wrong result: its timings measure the wrong work."""


def check(ok: bool, what: str) -> bool:
    """Raise ProbeError(what) unless ok; True otherwise (a caller may record it)."""
    if not ok:
        raise ProbeError(what)
    return True


@runtime_checkable
class Probe(Protocol):
    name: str
    backend: str

    def setup(self, *args: Any, **kwargs: Any) -> None: ...

    def run(self, *args: Any, **kwargs: Any) -> Any: ...

    def verify(self, *args: Any, **kwargs: Any) -> Any: ...

    def close(self) -> None: ...


# module:class of every probe (imported lazily: the CUDA ones need numba.cuda)
PROBES: tuple[str, ...] = (
    "memprobe.probes.cpu.chase:ChaseProbe",
    "memprobe.probes.cpu.line:StrideProbe",
    "memprobe.probes.cpu.line:FalseSharingProbe",
    "memprobe.probes.cpu.bandwidth:BandwidthProbe",
    "memprobe.probes.cpu.compute:FmaProbe",
    "memprobe.probes.cpu.compute:GemmProbe",
    "memprobe.probes.cpu.loaded:LoadedLatencyProbe",
    "memprobe.probes.cpu.loaded:SharingProbe",
    "memprobe.probes.gpu.latency:GpuChaseProbe",
    "memprobe.probes.gpu.bandwidth:BandwidthProbe",
    "memprobe.probes.gpu.bandwidth:SharedMemoryProbe",
    "memprobe.probes.gpu.compute:FmaProbe",
    "memprobe.probes.gpu.transfer:TransferProbe",
)
