"""Stages 1-4 of the flow for the CPU ceilings: run the bandwidth, compute, loaded-latency and
sharing probes, turn their raw ns into GB/s, GFLOP/s and ns, keep every sample as a curve, and
fill the levels the latency stage inferred. Appended to `cpu.CPU_STAGES` by `scan/cpu.py`.

Order: "sharing" runs first because it decides how big the all-thread working set of a level is
(a private level gets one level-sized set per thread, a shared one a single set split between
the threads); then "bandwidth", "compute", "loaded_latency". Declared facts are written beside
(`shared_cpu_list`, FMA width) and never read to choose a size.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from memprobe.result import (THREAD_KEYS, Code, BandwidthSetup, BandwidthTable, ComputeCeilings, Curve, CurvePoint,
                             GemmCeiling, Level, LoadedLatencyPoint, SharingEvidence, TheoreticalPeak)
from memprobe.infer.sharing import NOISE_FLOOR as SHARING_NOISE_FLOOR
from memprobe.infer.sharing import SHARED_RATIO, judge_sharing, judge_sharing_by_capacity
from memprobe.profile import CpuPlan
from memprobe.scan import ScanContext, Stage
from memprobe.scan.plan import check_memory, sweep_sizes

BW_MIN_SIZE_BYTES = 8 << 10
MEMORY_MIN_BYTES = 64 << 20  # the memory working set: at least this ...
MEMORY_CACHE_MULTIPLE = 4  # ... and this many times the last cache ...
MEMORY_MAX_BYTES = 512 << 20  # ... but no more (a noisy curve can invent a huge last "cache")
STREAM_ARRAY_MULTIPLE = 4  # STREAM's rule: each array at least 4x the largest cache
STREAM_ARRAY_MIN_BYTES = 32 << 20
SHARING_FILL = 0.7  # the sharing probe's working set, as a fraction of the level's capacity


# ---- sizes ----------------------------------------------------------------------------------
def _caches(levels: list[Level]) -> list[Level]:
    return [lv for lv in levels if lv.size_bytes]


def memory_size_bytes(levels: list[Level]) -> int:
    """Working set standing for main memory: several times the last cache, at least 64 MiB."""
    last = max((lv.size_bytes for lv in _caches(levels)), default=0) or 0
    return _align(max(MEMORY_MIN_BYTES, min(MEMORY_MAX_BYTES, MEMORY_CACHE_MULTIPLE * last)))


def stream_array_bytes(levels: list[Level], declared_largest_bytes: int | None,
                       free_bytes: int) -> tuple[int, bool]:
    """Each array of a memory-level kernel, by STREAM's rule: at least STREAM_ARRAY_MULTIPLE
    times the largest cache, measured or declared, whichever is larger (a VM's measured L3 slice
    can be a fraction of the host's L3, whose lines still serve the sweep). Planning, not
    inference: it picks the sizes to run. Capped so the three arrays of triad fit free memory
    with the usual headroom; returns (bytes, capped)."""
    from memprobe.scan.plan import MEMORY_HEADROOM

    largest = max([lv.size_bytes for lv in _caches(levels)] + [declared_largest_bytes or 0])
    want = _align(max(STREAM_ARRAY_MIN_BYTES, STREAM_ARRAY_MULTIPLE * largest))
    cap = _align(free_bytes // (MEMORY_HEADROOM * 3))
    return (min(want, cap), want > cap)


def level_sizes_bytes(levels: list[Level]) -> dict[str, int]:
    """A working set centred inside each level, in log size: half the first level, then the
    geometric middle between the previous level's capacity and this one's; memory: see above."""
    out: dict[str, int] = {}
    prev = None
    for lv in levels:
        if lv.size_bytes:
            s = lv.size_bytes / 2 if prev is None else math.sqrt(prev * lv.size_bytes)
            out[lv.name] = _align(int(s))
            prev = lv.size_bytes
        else:
            out[lv.name] = memory_size_bytes(levels)
    return out


def _align(n: int, align: int = 4096) -> int:
    return max(align, int(round(n / align)) * align)


def _threads_all() -> int:
    from memprobe.probes.cpu.bandwidth import max_threads
    from memprobe.probes.cpu.loaded import usable_cpus

    return max(1, min(max_threads(), len(usable_cpus())))


def _median(xs: list[float]) -> float | None:
    good = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(good) if good else None


def _best(xs: list[float]) -> float | None:
    """Highest rate: on a shared machine other tenants only ever slow a run down, so the best
    repetition is the ceiling (as the latency stage takes the lowest latency); every sample
    stays in the curve for the spread."""
    good = [x for x in xs if x is not None and math.isfinite(x)]
    return max(good) if good else None


# ---- sharing ------------------------------------------------------------------------------
def stage_sharing(ctx: ScanContext) -> None:
    """Private or shared, measured: a sweep across each cache's edge on one core, alone and while
    every other core chases a buffer of its own of the same size; the capacities fitted on the
    two sweeps decide (infer/sharing.py). The latencies at SHARING_FILL of the capacity are
    kept beside as the supporting figure."""
    import psutil

    from memprobe.probes.cpu.loaded import SharingProbe

    plan: CpuPlan = ctx.plan
    levels = ctx.device.levels
    caches = _caches(levels)
    # declared beside the evidence, matched by name only to show it (never read to decide)
    declared = {c.label.rstrip("d"): c.shared_cpu_list for c in ctx.device.declared.data_caches()}
    probe = SharingProbe(slot_bytes=ctx.device.line_size_bytes or 64, seed=ctx.options.seed)
    units = probe.other_threads + 1
    info = ctx.device.extra.sharing
    try:
        for k, lv in enumerate(caches):
            fill = _align(int(SHARING_FILL * lv.size_bytes), 64 * 64)
            entry = SharingEvidence(level=lv.name, size_bytes=fill, other_units=probe.other_threads,
                                    unit="ns", threshold=SHARED_RATIO, level_size_bytes=lv.size_bytes,
                                    level_size_source="inferred",
                                    declared_shared_cpu_list=declared.get(lv.name))
            info[lv.name] = entry
            if probe.other_threads == 0:
                entry.note = "one usable CPU: nothing to share with"
                continue
            # from below the share a shared level would leave each core to twice the capacity
            # (the time budget bounds a many-core machine's longer sweep)
            lo = max(lv.size_bytes // (2 * units), 4096)
            sizes = sorted(set(sweep_sizes(lo, 2 * lv.size_bytes, plan.sharing_points_per_octave, align=4096)) | {fill})
            samples: dict[int, tuple[list[float], list[float]]] = {}
            t0 = time.monotonic()
            free = psutil.virtual_memory().available
            for size in sizes:
                over_budget = time.monotonic() - t0 > plan.sharing_budget_s
                if size != fill and (over_budget or units * size * 4 > free):
                    # (the point at SHARING_FILL is always measured; every core holds a set)
                    entry.note = entry.note or (f"the sweep stopped before {size / 2**20:.3g} MiB: "
                                                + (f"past its {plan.sharing_budget_s:g} s budget" if over_budget
                                                   else "the cores' sets would not fit free memory"))
                    continue
                probe.setup(size)
                samples[size] = probe.run(plan.sharing_reps, target_ns=plan.sharing_target_ns)
            probe.verify()  # one full walk of every chase per level: the last size set up
            for size in sorted(samples):  # best repetition: other tenants only ever add latency
                entry.sweep_sizes_bytes.append(size)
                entry.sweep_alone.append(min(samples[size][0]))
                entry.sweep_loaded.append(min(samples[size][1]))
            alone, loaded = samples[fill]
            point = judge_sharing(alone, loaded, fill, units, (lv.size_interval_bytes or [0, lv.size_bytes])[1])
            entry.latency_alone, entry.latency_loaded, entry.ratio = min(alone), min(loaded), point.ratio
            entry.samples_alone, entry.samples_loaded = alone, loaded
            nxt = levels[levels.index(lv) + 1]
            spread = statistics.median((statistics.median(a) - min(a)) / statistics.median(a) for a, _ in samples.values())
            got = judge_sharing_by_capacity(entry.sweep_sizes_bytes, entry.sweep_alone, entry.sweep_loaded, units,
                                            nxt.latency_ns or 0.0, sigma=max(SHARING_NOISE_FLOOR, spread))
            entry.capacity_alone_bytes, entry.capacity_loaded_bytes = got.capacity_alone_bytes, got.capacity_loaded_bytes
            entry.capacity_alone_interval_bytes = list(got.interval_alone_bytes) if got.interval_alone_bytes else None
            entry.capacity_loaded_interval_bytes = list(got.interval_loaded_bytes) if got.interval_loaded_bytes else None
            entry.shared_share_bytes = got.shared_share_bytes
            entry.verdict = lv.sharing = got.verdict
            entry.note = ((entry.note + "; " if entry.note else "")
                          + f"a sweep across the edge on one core, alone and while the other {units - 1} chase sets of "
                          f"their own: {got.why}. At {SHARING_FILL:.0%} of the capacity: {point.why}")
            ctx.progress("sharing", k + 1, len(caches), f"{lv.name}: {lv.sharing}")
    finally:
        probe.close()


# ---- bandwidth ----------------------------------------------------------------------------
def _arena_layout(cached_bytes: int, memory_bytes: int) -> tuple[int, int]:
    """(memory's offset, memory's part) of the bandwidth stages' arena: the caches' working sets
    (`cached_bytes`, the largest) on huge pages, then memory's STREAM-sized arrays
    (`memory_bytes`, the largest set) on 4 KiB pages, as STREAM's own (buffers.alloc_split);
    refused here, before anything is measured, where memory cannot hold it."""
    from memprobe.probes.cpu.bandwidth import arena_bytes
    from memprobe.probes.cpu.buffers import HUGE_PAGE_BYTES

    mem_offset = -(-arena_bytes(cached_bytes) // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    mem_bytes = arena_bytes(memory_bytes)
    check_memory(mem_offset + mem_bytes)
    return mem_offset, mem_bytes


@contextmanager
def _arena(mem_offset: int, mem_bytes: int) -> Iterator[Any]:
    """One arena for every kernel, faulted in once (memory's arrays are gigabytes by STREAM's
    rule), closed after."""
    from memprobe.probes.cpu.bandwidth import fill_zero
    from memprobe.probes.cpu.buffers import alloc_split

    arena = alloc_split(mem_offset, mem_bytes)
    try:
        fill_zero(arena.array)
        yield arena
    finally:
        arena.close()


def stage_bandwidth(ctx: ScanContext) -> None:
    from memprobe.probes.cpu.bandwidth import KERNELS, BandwidthProbe, bandwidth_gbs

    plan: CpuPlan = ctx.plan
    levels = ctx.device.levels
    reps = plan.bandwidth_reps
    target_ns = plan.bandwidth_target_ns
    n_all = _threads_all()
    per_level = level_sizes_bytes(levels)
    mem = memory_size_bytes(levels)
    # all-thread working set of a level: one level-sized set per thread where the level is
    # private (each core has its own), one set split between the threads otherwise
    per_level_all = {name: (s * n_all if _level(levels, name).sharing == "private" else s)
                     for name, s in per_level.items()}
    import psutil

    declared_largest = max((c.size_bytes or 0 for c in ctx.device.declared.data_caches()), default=0)
    arr, capped = stream_array_bytes(levels, declared_largest, psutil.virtual_memory().available)
    if capped:
        ctx.device.warn(Code.NO_MEMORY, f"memory's bandwidth arrays are capped at {arr / 2**20:.0f} MiB each by "
                        "free memory, under STREAM's 4x the largest cache: the memory figures can read high",
                        "bandwidth")
    # memory's working set per kernel: its arrays, each `arr` bytes (one point, off the curve's sweep)
    mem_ws = {k.name: _align(k.arrays * arr) for k in KERNELS}
    # the arena: the curve's and the levels' working sets, then memory's STREAM-sized arrays
    mem_offset, mem_bytes = _arena_layout(max([mem, *per_level.values(), *per_level_all.values()]),
                                          max(mem_ws.values()))
    sweep = sweep_sizes(BW_MIN_SIZE_BYTES, mem, plan.bandwidth_points_per_octave, align=4096)
    if not plan.bandwidth_sweep_past_last_cache:  # the big sizes cost the most: up to twice the
        # last cache, then memory's point
        last = max((lv.size_bytes for lv in _caches(levels)), default=mem)
        sweep = [s for s in sweep if s <= 2 * last]
    sizes = sorted(set(sweep) | set(per_level.values()))
    thread_counts = {"threads_1": 1, "threads_all": n_all}
    curves: dict[tuple[str, str], Curve] = {}
    # streaming-store kernels only at memory's working set: inside a cache they evict the data
    mem_names = [lv.name for lv in levels if not lv.size_bytes]
    sizes_of = {k.name: (sorted(set(sizes) | {mem_ws[k.name]}) if k.stores == "cached" else [mem_ws[k.name]])
                for k in KERNELS}
    for k in KERNELS:
        for key, n in thread_counts.items():
            c = Curve(f"bandwidth_{k.name}_{key}", "bandwidth", "size_bytes", "GB/s", [],
                      {"kernel": k.name, "threads": n, "arrays": k.arrays,
                       "bytes_per_element": k.bytes_per_element, "flops_per_element": k.flops,
                       "counting": "STREAM (bytes read + bytes written, no write-allocate)",
                       "stores": k.stores, "base_kernel": k.base or k.name,
                       "x": "working set, all arrays and all threads together",
                       "page_kind": "huge",
                       "page_kind_memory": "4k (memory's STREAM-sized arrays, as STREAM's own)"})
            ctx.device.curves.append(c)  # appended first: an interrupted scan keeps its points
            curves[(k.name, key)] = c
    total = sum(len(v) for v in sizes_of.values())
    done = 0
    extra_all: dict[str, dict[str, list[float]]] = {}
    with _arena(mem_offset, mem_bytes) as arena:
        for k in KERNELS:
            cached_probe = BandwidthProbe(k, arena=arena)
            mem_probe = BandwidthProbe(k, arena=arena, offset_bytes=mem_offset)
            probe = cached_probe
            try:
                for size in sizes_of[k.name]:
                    # memory's STREAM-sized point: one pass lasts far past the clock's resolution,
                    # so a few single-pass repetitions (the larger set costs passes, not a curve)
                    at_mem = size == mem_ws[k.name]
                    probe = mem_probe if at_mem else cached_probe
                    probe.setup(size)
                    for key, n in thread_counts.items():
                        ns = probe.run(min(reps, plan.memory_reps) if at_mem else reps, threads=n,
                                       target_ns=1.0 if at_mem else target_ns)
                        gbs = [bandwidth_gbs(k, probe.n_elements, x) for x in ns]
                        curves[(k.name, key)].points.append(CurvePoint(float(size), gbs))
                    probe.verify()  # the arrays after both thread counts hold what the kernel must write
                    done += 1
                    ctx.progress("bandwidth", done, total, f"{k.name} {size / 1024:.0f} KiB")
                # all-thread points off the curve (a private level's set times the threads)
                for name, size in per_level_all.items():
                    if name in mem_names or size in sizes_of[k.name] or k.stores != "cached":
                        continue
                    probe = cached_probe
                    probe.setup(size)
                    ns = probe.run(reps, threads=n_all, target_ns=target_ns)
                    probe.verify()
                    extra_all.setdefault(name, {})[k.name] = [bandwidth_gbs(k, probe.n_elements, x) for x in ns]
            finally:
                cached_probe.close()
                mem_probe.close()
    # per level: the samples at the level's working set
    sharing = ctx.device.extra.sharing
    table = BandwidthTable(statistic="best", counting="STREAM (bytes read + bytes written, no write-allocate)",
                           threads_1="one thread", threads_all=f"{n_all} threads (all usable CPUs)",
                           verified={k.name: True for k in KERNELS})
    # a level's roof is the best sample at any size of the curve well inside it (from 1.5x the
    # capacity before it to its own capacity / 1.5; its centre alone if that is empty): one
    # size a neighbour slowed cannot make a roof, or put a farther level above a nearer one
    inside: dict[str, tuple[int, int]] = {}
    prev = 0
    for lv in _caches(levels):
        lo, hi = int(1.5 * prev), int(lv.size_bytes / 1.5)
        inside[lv.name] = (lo, hi) if lo <= per_level[lv.name] <= hi else (per_level[lv.name],) * 2
        prev = lv.size_bytes
    for lv in levels:
        s1, sall = per_level[lv.name], per_level_all[lv.name]
        is_mem = lv.name in mem_names
        if is_mem:
            s1 = sall = mem_ws["triad"]
        bw: dict[str, dict[str, float | None]] = {}
        for k in KERNELS:
            if k.stores != "cached" and not is_mem:
                continue
            if is_mem:
                w = mem_ws[k.name]
                bw[k.name] = {"threads_1": _best(_samples_at(curves[(k.name, "threads_1")], w)),
                              "threads_all": _best(_samples_at(curves[(k.name, "threads_all")], w))}
                continue
            lo, hi = inside[lv.name]
            one = _best(_samples_in(curves[(k.name, "threads_1")], lo, hi))
            if lv.name in extra_all:
                allv = _best(extra_all[lv.name][k.name])
            else:  # the curve's x is all threads' sets together: each thread's part must outgrow
                # the level before, and a private level holds one set per thread
                lo_all = lo * n_all
                hi_all = hi * n_all if _level(levels, lv.name).sharing == "private" else hi
                # where no point of the curve lies in that range (the range is narrower than
                # the curve's step), the level's own all-thread set, which the sweep holds
                pool = _samples_in(curves[(k.name, "threads_all")], lo_all, hi_all) if lo_all <= hi_all else []
                allv = _best(pool or _samples_at(curves[(k.name, "threads_all")], sall))
            bw[k.name] = {"threads_1": one, "threads_all": allv}
        lv.bandwidth_gbs = bw
        table.levels.append(BandwidthSetup(level=lv.name, size_bytes_threads_1=s1, size_bytes_threads_all=sall,
                                           threads_all=n_all, array_bytes=arr if is_mem else None,
                                           size_range_bytes=None if is_mem else list(inside[lv.name]),
                                           samples_threads_all_off_curve=extra_all.get(lv.name)))
        # all-thread over one-thread read bandwidth: ~cores for a private level, less when the
        # threads share one (a shared L3's ports, the memory controllers)
        if lv.name in sharing:
            sharing[lv.name].bw_scaling_all_vs_1 = _ratio(bw.get("read", {}))
    ctx.device.bandwidth = table


def stage_bandwidth_recheck(ctx: ScanContext) -> None:
    """A second round of every level's bandwidth figure, at the end of the scan, at the working
    sets the figure was taken at (a cache: its centre for one thread, its all-thread set;
    memory: its STREAM-sized arrays, 4 KiB pages), each kernel and thread count. The samples
    join the figure's (`BandwidthSetup.samples_recheck`) and the figure is the best of both
    rounds.

    Why: the bandwidth stage takes a figure's repetitions within milliseconds, so their spread
    says nothing of what moves on a shared host over tens of seconds: where the hypervisor puts
    the two vCPUs (apart, or on one core's SMT pair), how much of the memory bus neighbours
    use. Two back-to-back scans of one quiet guest read L1 write on all threads at 375 and 474
    GB/s, each with samples within 7 % (docs/validation.md, "Bandwidth recheck"). A round
    taken after the compute and rate stages, seconds later, lets the scan's own samples carry
    that drift, which is what `memprobe check` and the fleet read as a figure's run-to-run
    spread, and it gives the ceiling a second chance to be read undisturbed."""
    from memprobe.probes.cpu.bandwidth import KERNELS, BandwidthProbe, bandwidth_gbs

    table = ctx.device.bandwidth
    if table is None or not table.levels:
        return
    plan: CpuPlan = ctx.plan
    by_name = {lv.name: lv for lv in ctx.device.levels}
    setups = [su for su in table.levels if su.level in by_name]
    caches = [su for su in setups if by_name[su.level].size_bytes]
    mem = next((su for su in setups if not by_name[su.level].size_bytes and su.array_bytes), None)
    mem_ws = {k.name: _align(k.arrays * mem.array_bytes) for k in KERNELS} if mem is not None else {}
    cached_max = max([s for su in caches for s in (su.size_bytes_threads_1, su.size_bytes_threads_all)], default=0)
    mem_offset, mem_bytes = _arena_layout(cached_max, max(mem_ws.values(), default=4096))
    total = sum((len(caches) if k.stores == "cached" else 0) + (mem is not None) for k in KERNELS)
    done = 0
    with _arena(mem_offset, mem_bytes) as arena:
        for k in KERNELS:
            cached_probe = BandwidthProbe(k, arena=arena)
            mem_probe = BandwidthProbe(k, arena=arena, offset_bytes=mem_offset)
            try:
                todo = [(su, False) for su in caches if k.stores == "cached"] + ([(mem, True)] if mem else [])
                for su, at_mem in todo:
                    probe = mem_probe if at_mem else cached_probe
                    got: dict[str, list[float]] = {}
                    for key, size in (("threads_1", su.size_bytes_threads_1), ("threads_all", su.size_bytes_threads_all)):
                        if at_mem:
                            size = mem_ws[k.name]
                        n = 1 if key == "threads_1" else su.threads_all
                        probe.setup(size)
                        ns = probe.run(plan.memory_reps if at_mem else plan.bandwidth_reps, threads=n,
                                       target_ns=1.0 if at_mem else plan.bandwidth_target_ns)
                        probe.verify()
                        got[key] = [bandwidth_gbs(k, probe.n_elements, x) for x in ns]
                    su.samples_recheck = {**(su.samples_recheck or {}), k.name: got}
                    figs = by_name[su.level].bandwidth_gbs.setdefault(k.name, {})
                    for key, xs in got.items():  # the best of both rounds
                        figs[key] = _best([x for x in (figs.get(key), *xs) if x is not None])
                    done += 1
                    ctx.progress("bandwidth_recheck", done, total, f"{k.name} {su.level}")
            finally:
                cached_probe.close()
                mem_probe.close()
    sharing = ctx.device.extra.sharing
    for name, sh in sharing.items():  # the scaling the sharing table shows follows the figures
        if name in by_name:
            sh.bw_scaling_all_vs_1 = _ratio(by_name[name].bandwidth_gbs.get("read", {}))


def _level(levels: list[Level], name: str) -> Level:
    return next(lv for lv in levels if lv.name == name)


def _samples_in(curve: Curve, lo: int, hi: int) -> list[float]:
    """Every sample of the curve's points from `lo` to `hi` bytes."""
    return [x for p in curve.points if lo <= int(p.x) <= hi for x in p.samples]


def _samples_at(curve: Curve, size: int) -> list[float]:
    for p in curve.points:
        if int(p.x) == int(size):
            return p.samples
    return []


def _ratio(bw: dict[str, float | None]) -> float | None:
    one, allv = bw.get("threads_1"), bw.get("threads_all")
    return allv / one if one and allv else None


# ---- compute ------------------------------------------------------------------------------
def stage_compute(ctx: ScanContext) -> None:
    from memprobe.probes.cpu.compute import FmaProbe, GemmProbe, blas_library, gflops

    plan: CpuPlan = ctx.plan
    reps = plan.compute_reps
    n_all = _threads_all()
    fma: dict[str, dict[str, float | None]] = {}
    fma_samples: dict[str, dict[str, list[float]]] = {}
    steps = [(dt, key) for dt in ("float32", "float64") for key in THREAD_KEYS]
    for i, (dt, key) in enumerate(steps):
        p = FmaProbe(dt)
        p.setup(1 if key == "threads_1" else n_all)
        ns = p.run(reps, target_ns=plan.fma_target_ns)
        p.verify()
        g = [gflops(p.flops_per_run, x) for x in ns]
        fma.setdefault(dt, {})[key] = _best(g)
        fma_samples.setdefault(dt, {})[key] = g
        ctx.progress("compute", i + 1, len(steps) + 1, f"FMA {dt} {key}")
    lib = blas_library()
    gemm = []
    for dt in ("float32", "float64"):
        for n in plan.gemm_sizes:
            p = GemmProbe(dt, seed=ctx.options.seed)
            p.setup(n)
            ns = p.run(reps)
            p.verify()
            p.close()
            g = [gflops(2.0 * n ** 3, x) for x in ns]
            gemm.append(GemmCeiling(library=lib, dtype=dt, n=n, threads="all", gflops=_best(g), samples=g))
    ctx.progress("compute", len(steps) + 1, len(steps) + 1, "GEMM")
    clock = ctx.device.clock_ghz
    per_cycle = ctx.device.declared.fma_flops_per_cycle
    ctx.device.compute = ComputeCeilings(
        fma=fma, fma_samples=fma_samples, gemm=gemm, statistic="best", verified=True,
        method="independent x = x*m + a chains, 14 vector registers' worth per thread",
        theoretical=TheoreticalPeak(
            clock_ghz=clock, units=n_all, flops_per_cycle_per_unit=dict(per_cycle),
            gflops={dt: clock * n_all * f if clock and f else None for dt, f in per_cycle.items()}))


# ---- loaded latency -----------------------------------------------------------------------
def stage_loaded_latency(ctx: ScanContext) -> None:
    from memprobe.probes.cpu.bandwidth import kernel_by_name
    from memprobe.probes.cpu.loaded import LoadedLatencyProbe

    plan: CpuPlan = ctx.plan
    mem = memory_size_bytes(ctx.device.levels)
    check_memory(mem * 2)
    reps = plan.loaded_reps
    probe = LoadedLatencyProbe(mem, mem, slot_bytes=ctx.device.line_size_bytes or 64, seed=ctx.options.seed)
    points = [(0, "read")]
    for kernel in plan.loaded_kernels:
        points += [(n, kernel) for n in range(1, probe.max_streaming_threads + 1)]
    out = []
    curve = Curve("loaded_latency", "loaded_latency", "bandwidth_gbs", "ns", [],
                  {"chase_bytes": mem, "stream_bytes_per_thread": mem,
                   "method": "one core chases, the others stream over buffers of their own"})
    try:
        probe.setup()
        for i, (n, kernel) in enumerate(points):
            r = probe.run(n, kernel, reps, target_ns=plan.loaded_target_ns)
            k = kernel_by_name(kernel)
            bw = sum(b / t for b, t in zip(r["stream_bytes"], r["stream_ns"]) if t)
            samples = r["samples_ns"]
            out.append(LoadedLatencyPoint(
                streaming_threads=r["streaming_threads"], kernel=kernel, bandwidth_gbs=bw,
                latency_ns=min(samples), latency_median_ns=_median(samples), samples_ns=samples,
                bytes_per_element=k.bytes_per_element))
            curve.points.append(CurvePoint(bw, samples))
            ctx.progress("loaded_latency", i + 1, len(points), f"{n} x {kernel}")
        probe.verify()
    finally:
        probe.close()
    ctx.device.loaded_latency = out
    ctx.device.curves.append(curve)


CPU_CEILING_STAGES: tuple[Stage, ...] = (
    Stage("sharing", stage_sharing, "private or shared per level (chases on the other cores)"),
    Stage("bandwidth", stage_bandwidth, "bandwidth read/write/copy/triad vs size, 1 and all threads"),
    Stage("compute", stage_compute, "FMA peak and BLAS matmul"),
    Stage("loaded_latency", stage_loaded_latency, "memory latency while other cores stream"),
    Stage("bandwidth_recheck", stage_bandwidth_recheck, "bandwidth again at each level's working sets, "
          "seconds later: the figures' samples span the scan"),
)
