"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): the host<->GPU
link, the path a training batch takes.

Host-to-device and device-to-host copies of one buffer, from pageable (ordinary numpy) and
pinned (page-locked, `cuda.pinned_array`) host memory, across sizes. A pageable copy is staged
by the driver through a pinned bounce buffer, which is why it is slower. Copies are the
synchronous numba.cuda ones, timed from the host around the call: that is the cost a caller
pays (launch and driver overhead included, which dominates small sizes). Seconds only.
"""

from __future__ import annotations

import time

import numpy as np
from numba import cuda

from memprobe.probes.protocol import check

DIRECTIONS = ("h2d", "d2h")
HOST_KINDS = ("pageable", "pinned")


class TransferProbe:
    """setup(size_bytes) allocates host buffers (pageable, pinned) and one device buffer;
    run(direction, host_kind, reps) returns seconds per copy; verify() round-trips data."""

    name = "transfer"
    backend = "cuda"

    def __init__(self) -> None:
        self.size_bytes = 0
        self.host: dict[str, np.ndarray] = {}
        self.dev = None

    def setup(self, size_bytes: int) -> None:
        n = max(1, int(size_bytes))
        self.size_bytes = n
        pageable = np.ones(n, dtype=np.uint8)
        pinned = cuda.pinned_array(n, dtype=np.uint8)
        pinned[:] = 1
        self.host = {"pageable": pageable, "pinned": pinned}
        self.dev = cuda.device_array(n, dtype=np.uint8)

    def _copy(self, direction: str, host_kind: str) -> None:
        h = self.host[host_kind]
        if direction == "h2d":
            self.dev.copy_to_device(h)
        else:
            self.dev.copy_to_host(h)

    def run(self, direction: str, host_kind: str, repetitions: int) -> list[float]:
        if direction not in DIRECTIONS or host_kind not in HOST_KINDS:
            raise ValueError(f"direction in {DIRECTIONS}, host_kind in {HOST_KINDS}")
        self._copy(direction, host_kind)  # first copy pays page-faults / registration
        cuda.synchronize()
        out = []
        for _ in range(repetitions):
            t0 = time.perf_counter()
            self._copy(direction, host_kind)
            cuda.synchronize()
            out.append(time.perf_counter() - t0)
        return out

    def verify(self) -> bool:
        ok = True
        for kind in HOST_KINDS:
            src = (np.arange(self.size_bytes) % 251).astype(np.uint8)
            self.host[kind][:] = src
            self._copy("h2d", kind)
            self.host[kind][:] = 0
            self._copy("d2h", kind)
            ok &= bool(np.array_equal(self.host[kind], src))
        return check(ok, "a host<->device round trip changed the data")

    def close(self) -> None:
        self.host = {}
        self.dev = None
