"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): latency under load.

LoadedLatencyProbe (what Intel's Memory Latency Checker calls loaded latency): one thread chases
a memory-sized Sattolo cycle while `k` other threads stream (a kernel of the bandwidth table)
over buffers of their own. It returns the chase's ns per hop and the streams' bytes and ns, so
the stage can draw latency against bandwidth demand. 0 streaming threads is the idle baseline.

SharingProbe: one thread chases a working set of `size_bytes` (chosen near a level's capacity)
alone, then while every other core chases a buffer of its own of the same size. A private level
keeps its capacity, so the latency stays; a shared one is split between the chasers, the set no
longer fits and the latency climbs to the next level's.

Threads: plain Python threads around `nogil` Numba kernels (numba's pool cannot run two
different kernels at once), each pinned to its own CPU with sched_setaffinity (per thread on
Linux). The main thread is never pinned: numba's OpenMP pool, created later, would inherit it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

import numpy as np

from memprobe.probes.cpu.bandwidth import BandwidthProbe, kernel_by_name, stream_pass
from memprobe.probes.cpu.chase import ChaseProbe, chase


# the one chase kernel (nogil), so loaded and sharing latencies cost what the scan's do
chase_nogil = chase


def usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _pin(cpu: int | None) -> None:
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu})  # pid 0 = this thread on Linux
    except (AttributeError, OSError):
        pass  # not Linux or not allowed: unpinned threads still load the memory system


class _Background(threading.Thread):
    """Calls `work()` over and over on a pinned CPU until stopped; keeps each call's end time
    and duration (ns) so the caller can count what ran inside its window."""

    def __init__(self, work: Callable[[], object], cpu: int | None):
        super().__init__(daemon=True)
        self.work = work
        self.cpu = cpu
        self.stop_flag = threading.Event()
        self.ready = threading.Event()
        self.passes: list[tuple[int, int]] = []  # (end_ns, duration_ns)
        self.error: BaseException | None = None

    def run(self) -> None:
        _pin(self.cpu)
        try:
            self.work()  # first call: warm-up (pages, caches)
            self.ready.set()
            while not self.stop_flag.is_set():
                t0 = time.perf_counter_ns()
                self.work()
                t1 = time.perf_counter_ns()
                self.passes.append((t1, t1 - t0))
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self.ready.set()

    def stop(self) -> None:
        self.stop_flag.set()
        self.join()
        if self.error is not None:
            raise self.error

    def window(self, t0: int, t1: int) -> tuple[int, int]:
        """(passes, ns) of the passes that ended inside [t0, t1]."""
        inside = [d for end, d in self.passes if t0 <= end <= t1]
        return len(inside), sum(inside)


def _run_pinned(fn: Callable[[], object], cpu: int | None) -> object:
    """Run fn on a fresh thread pinned to `cpu` and return its result (re-raising errors)."""
    box: dict[str, object] = {}

    def target() -> None:
        _pin(cpu)
        try:
            box["r"] = fn()
        except BaseException as exc:
            box["e"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]  # type: ignore[misc]
    return box.get("r")


def _chase_samples(probe: ChaseProbe, repetitions: int, target_ns: float) -> list[float]:
    """ns per hop, one per repetition, with the nogil kernel (calibrated like ChaseProbe.run).
    Each repetition goes on from where the last one stopped, after a warm-up lap: restarting
    at the first slot re-walks the prefix the last repetition just cached whenever a repetition
    is shorter than a lap, and reads an L3-sized set at the L2's latency."""
    p = probe.start_addr
    # one lap brings a cache-sized set in; past ~1M slots (64 MiB) it is beyond any cache anyway
    p = np.uint64(chase_nogil(p, np.uint64((min(probe.n_slots, 1 << 20) + 7) // 8 * 8)))
    hops = 20_000
    t0 = time.perf_counter_ns()
    p = np.uint64(chase_nogil(p, np.uint64(hops)))
    per_hop = max((time.perf_counter_ns() - t0) / hops, 0.05)
    hops = int(max(20_000, target_ns / per_hop)) // 8 * 8
    out = []
    for _ in range(repetitions):
        t0 = time.perf_counter_ns()
        p = np.uint64(chase_nogil(p, np.uint64(hops)))
        out.append((time.perf_counter_ns() - t0) / hops)
    return out


class LoadedLatencyProbe:
    """Latency of a `chase_bytes` chase on the first CPU while `k` streams run on the others."""

    name = "loaded_latency"
    backend = "cpu"

    def __init__(self, chase_bytes: int, stream_bytes: int, slot_bytes: int = 64, seed: int = 12345):
        self.chase_bytes = int(chase_bytes)
        self.stream_bytes = int(stream_bytes)
        self.slot_bytes = slot_bytes
        self.seed = seed
        self.cpus = usable_cpus()
        self.chaser: ChaseProbe | None = None
        self.streams: dict[str, list[BandwidthProbe]] = {}

    @property
    def max_streaming_threads(self) -> int:
        return max(0, len(self.cpus) - 1)

    def setup(self) -> None:
        self.chaser = ChaseProbe(slot_bytes=self.slot_bytes, page_kind="huge", seed=self.seed)
        self.chaser.setup(self.chase_bytes)

    def _streams(self, kernel: str, k: int) -> list[BandwidthProbe]:
        have = self.streams.setdefault(kernel, [])
        while len(have) < k:
            p = BandwidthProbe(kernel_by_name(kernel))
            p.setup(self.stream_bytes)
            have.append(p)
        return have[:k]

    def run(self, streaming_threads: int, kernel: str = "read", repetitions: int = 5,
            target_ns: float = 4e6) -> dict:
        """Raw result of one load point: chase ns per hop per repetition, and for the streams
        the bytes moved and the ns they took inside the chase's window (per thread)."""
        assert self.chaser is not None, "setup() first"
        k = min(int(streaming_threads), self.max_streaming_threads)
        probes = self._streams(kernel, k)
        bg = []
        for i, p in enumerate(probes):
            arrays, kern = p.arrays, p.kernel
            bg.append(_Background(lambda arrays=arrays, kern=kern: stream_pass(kern, arrays),
                                  self.cpus[1 + i]))
        for t in bg:
            t.start()
        try:
            for t in bg:
                t.ready.wait()
            w0 = time.perf_counter_ns()
            samples = _run_pinned(lambda: _chase_samples(self.chaser, repetitions, target_ns), self.cpus[0])
            w1 = time.perf_counter_ns()
            # streams keep running until at least one of their passes ends inside the window
            deadline = time.perf_counter_ns() + 2_000_000_000
            while any(t.window(w0, time.perf_counter_ns())[0] == 0 for t in bg) and time.perf_counter_ns() < deadline:
                time.sleep(0.001)
            w1 = max(w1, max((t.passes[-1][0] for t in bg if t.passes), default=w1))
        finally:
            for t in bg:
                t.stop()
        stream_passes = [t.window(w0, w1) for t in bg]
        return {
            "streaming_threads": k,
            "kernel": kernel,
            "samples_ns": list(samples),  # type: ignore[arg-type]
            "stream_bytes": [n * p.bytes_per_pass for (n, _), p in zip(stream_passes, probes)],
            "stream_ns": [ns for _, ns in stream_passes],
        }

    def verify(self) -> None:
        assert self.chaser is not None
        self.chaser.verify()
        for probes in self.streams.values():
            for p in probes:
                p.verify()

    def close(self) -> None:
        if self.chaser is not None:
            self.chaser.close()
            self.chaser = None
        for probes in self.streams.values():
            for p in probes:
                p.close()
        self.streams = {}


class SharingProbe:
    """Latency at `size_bytes` on the first CPU, alone and while the other CPUs chase their own
    buffers of the same size."""

    name = "sharing"
    backend = "cpu"

    def __init__(self, slot_bytes: int = 64, seed: int = 12345):
        self.slot_bytes = slot_bytes
        self.seed = seed
        self.cpus = usable_cpus()
        self.probes: list[ChaseProbe] = []
        self.size_bytes = 0

    @property
    def other_threads(self) -> int:
        return max(0, len(self.cpus) - 1)

    def setup(self, size_bytes: int) -> None:
        self.close()
        self.size_bytes = int(size_bytes)
        for i in range(1 + self.other_threads):
            p = ChaseProbe(slot_bytes=self.slot_bytes, page_kind="huge", seed=self.seed + i)
            p.setup(self.size_bytes)
            self.probes.append(p)

    def run(self, repetitions: int, target_ns: float = 2e6) -> tuple[list[float], list[float]]:
        """(alone ns per hop, loaded ns per hop), one value per repetition each."""
        assert self.probes, "setup() first"
        me = self.probes[0]
        alone = _run_pinned(lambda: _chase_samples(me, repetitions, target_ns), self.cpus[0])
        bg = []
        for i, p in enumerate(self.probes[1:]):
            start = p.start_addr
            hops = np.uint64(max(8, int(p.n_slots)) // 8 * 8 + 8)  # about one lap per call
            bg.append(_Background(lambda start=start, hops=hops: chase_nogil(start, hops), self.cpus[1 + i]))
        for t in bg:
            t.start()
        try:
            for t in bg:
                t.ready.wait()
            loaded = _run_pinned(lambda: _chase_samples(me, repetitions, target_ns), self.cpus[0])
        finally:
            for t in bg:
                t.stop()
        return list(alone), list(loaded)  # type: ignore[arg-type]

    def verify(self) -> None:
        for p in self.probes:
            p.verify()

    def close(self) -> None:
        for p in self.probes:
            p.close()
        self.probes = []
