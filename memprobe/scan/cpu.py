"""The CPU scan as a table of stages: declared facts, clock, line size, latency curves (huge and
4 KiB pages), level inference, then the ceilings (bandwidth, compute, loaded latency, sharing).
Each stage turns probe timings into curves (the one place ns and GB/s are computed is the probe
wrapper here or in ceilings.py) and stores them on the DeviceResult as it goes, so an
interrupted scan keeps every finished stage."""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from memprobe.errors import ResourceError
from memprobe.infer import infer_levels
from memprobe.infer.line import line_from_false_sharing, line_from_stride
from memprobe.infer.to_result import (is_memory_side_cache, levels_from_hierarchy, memory_side_candidate,
                                      note_near_memory)
from memprobe.platform.cpu import declared_cpu
from memprobe.probes.cpu.buffers import span_bytes
from memprobe.profile import CpuPlan, Profile
from memprobe.result import (Code, Curve, CurvePoint, DeviceResult, LineSizeEvidence, MemorySideCheck,
                             PageLocalMemory, ScanResult)
from memprobe.scan import ProgressFn, ScanContext, ScanOptions, Stage, run_stages
from memprobe.scan.plan import check_memory, sweep_sizes

RECHECK_MIN_BYTES = 4 << 20  # the extra passes cover at least this much of the sweep
PAGE_LOCAL_REGION_BYTES = 2 << 20  # one huge page: a region needs one translation
PAGE_LOCAL_ROUNDS = 3  # the two sizes alternate, so a drift in time hits both alike
PAGE_LOCAL_MEMORY_MIN_BYTES = 32 << 20  # memory's page-local latency: at least this size


def _plan(ctx: ScanContext) -> CpuPlan:
    return ctx.plan


# ---- stages ---------------------------------------------------------------------------------
def stage_declared(ctx: ScanContext) -> None:
    d = declared_cpu()
    ctx.device.declared = d
    ctx.device.name = d.model or ctx.device.name


def stage_clock(ctx: ScanContext) -> None:
    from memprobe.probes.cpu.chase import clock_samples

    samples = clock_samples(_plan(ctx).clock_reps)
    good = [v for v in samples if math.isfinite(v)]
    # a repetition with no valid timing (preempted three times over) has no GHz: it is counted,
    # not stored as a number (JSON has no NaN, and a scan must read back what it wrote)
    ctx.device.curves.append(Curve("clock", "clock", "repetition", "GHz",
                                   [CurvePoint(float(i), [v]) for i, v in enumerate(good)],
                                   {"repetitions_without_a_valid_timing": len(samples) - len(good)}))
    ctx.device.clock_ghz = statistics.median(good) if good else None


def stage_line(ctx: ScanContext) -> None:
    from memprobe.probes.cpu.line import STRIDES_BYTES, FalseSharingProbe, StrideProbe

    plan = _plan(ctx)
    reps = plan.line_reps
    fs_line = None
    if FalseSharingProbe.available():
        fs = FalseSharingProbe(iters=plan.false_sharing_iters)
        fs.setup()
        try:
            pts = [CurvePoint(float(s), fs.run(s, reps)) for s in STRIDES_BYTES]
            fs.verify()
        finally:
            fs.close()
        ctx.device.curves.append(Curve("line_false_sharing", "stride", "stride_bytes", "ns", pts,
                                       {"method": "two threads, atomic adds stride_bytes apart"}))
        fs_line = line_from_false_sharing([int(p.x) for p in pts], [p.median for p in pts])
    sp = StrideProbe(size_bytes=plan.stride_size_bytes)
    pts = []
    try:
        for k, s in enumerate(STRIDES_BYTES):
            pts.append(CurvePoint(float(s), sp.run(s, reps, target_ns=2e6)))
            sp.verify()
            ctx.progress("line", k + 1, len(STRIDES_BYTES), f"stride {s} B")
    finally:
        sp.close()
    ctx.device.curves.append(Curve("line_stride", "stride", "stride_bytes", "ns", pts,
                                   {"method": "dependent pair per random block, stride apart"}))
    st_line = line_from_stride([int(p.x) for p in pts], [p.median for p in pts])
    ctx.device.line_size_bytes = fs_line or st_line
    ctx.device.extra.line_size = LineSizeEvidence(false_sharing_bytes=fs_line, stride_sweep_bytes=st_line)
    if fs_line and st_line != fs_line:
        ctx.device.warn(Code.LINE_SIZE_DISAGREE, 
            f"the stride sweep suggests {st_line or 'no'} line size, the false-sharing probe "
            f"{fs_line} B: prefetchers (adjacent-line, region) hide the line in the stride sweep; "
            f"the false-sharing figure is used")


def _latency_curve(ctx: ScanContext, page_kind: str, sizes: list[int], reps: int, name: str,
                   seed: int | None = None, into: Curve | None = None, hold_bytes: int = 0) -> Curve:
    """Chase each size with a fresh buffer. The points go into a new curve, stored on the device
    before the first point (a Ctrl-C keeps the points so far), or with `into` their samples join
    that curve's points of the same size as they come.

    `hold_bytes`: memory held (touched) through the sweep so that its buffers, most likely,
    land on other physical pages than the sweep before it. The kernel tends to hand a freed
    buffer's pages straight back: every size under 2 MiB of a sweep, and of the next sweep too,
    sat on the same huge page (seen in /proc/self/pagemap; the hold moved each pass to its own,
    also seen there), and on a VM that page's host placement sets where the L2 edge starts (one
    362 KiB buffer on each of 12 huge pages: 5.2-8.6 ns). A heuristic, not a guarantee."""
    from memprobe.probes.cpu.buffers import alloc
    from memprobe.probes.cpu.chase import ChaseProbe

    slot = ctx.device.line_size_bytes or 64
    if into is None:
        curve = Curve(name, "latency", "size_bytes", "ns", [],
                      {"page_kind": page_kind, "slot_bytes": slot, "method": "Sattolo pointer chase"})
        ctx.device.curves.append(curve)
    else:
        curve = into
    by_size = {int(p.x): p for p in curve.points}
    probe = ChaseProbe(slot_bytes=slot, page_kind=page_kind,
                       seed=ctx.options.seed if seed is None else seed)
    held = None
    try:
        if hold_bytes > 0 and sizes:
            try:
                check_memory(hold_bytes + max(sizes))
            except ResourceError:
                hold_bytes = 0  # too little free memory to hold: the pass still runs, on any pages
            if hold_bytes:
                held = alloc(hold_bytes, np.uint8, page_kind)
                held.array[::4096] = 1  # fault every page in: pages count as taken once touched
        for k, size in enumerate(sizes):
            probe.setup(size)  # a fresh buffer per size: its own page placement
            got = probe.run(reps, min_hops=20_000, target_ns=3e6)
            if int(size) in by_size:
                by_size[int(size)].samples.extend(got)
            else:
                curve.points.append(CurvePoint(float(size), got))
            ctx.progress(name, k + 1, len(sizes), f"{size / 1024:.0f} KiB")
    finally:
        probe.close()
        if held is not None:
            held.close()
    return curve


def stage_latency(ctx: ScanContext) -> None:
    plan = _plan(ctx)
    max_b = plan.latency_top_bytes
    check_memory(max_b)
    per_oct = plan.points_per_octave
    sizes = sweep_sizes(plan.min_size_bytes, max_b, per_oct)
    t_start = time.perf_counter()
    curve = _latency_curve(ctx, "huge", sizes, plan.latency_reps, "latency_hugepage")
    curve.params.update(passes=1, inferred_from="25th percentile of each size's samples")
    # grow the sweep while the curve still climbs (memory not reached), unless capped by the user
    budget_s = plan.latency_grow_budget_s
    ctx.state["max_size_bytes"] = max_b
    while plan.max_size_bytes is None and max_b < plan.latency_grow_limit_bytes:
        h = infer_levels(curve.xs(), curve.lows())
        if h.memory_reached:
            break
        spent_s = time.perf_counter() - t_start
        if 2 * spent_s > budget_s:  # spent so far + the next doubling, costed as all of it
            ctx.device.warn(
                Code.SWEEP_BUDGET, f"memory's latency still climbs at {max_b >> 20} MiB: the sweep stopped growing at "
                f"its time budget ({budget_s:g} s); --max-size sweeps further")
            break
        try:
            check_memory(max_b * 2)
        except ResourceError:
            ctx.device.warn(Code.SWEEP_MEMORY,
                            "the sweep could not grow past %d MiB: too little free memory" % (max_b >> 20))
            break
        more = [s for s in sweep_sizes(max_b, max_b * 2, per_oct) if s > max_b]
        _latency_curve(ctx, "huge", more, plan.latency_reps, "latency", into=curve)
        max_b *= 2
        ctx.state["max_size_bytes"] = max_b
    ctx.result.settings.cpu_plan["latency_top_reached_bytes"] = max_b


def stage_latency_4k(ctx: ScanContext) -> None:
    plan = _plan(ctx)
    max_b = ctx.state.get("max_size_bytes") or plan.latency_top_bytes
    sizes = sweep_sizes(plan.min_size_bytes, max_b, 2)
    _latency_curve(ctx, "4k", sizes, plan.latency_4k_reps, "latency_4k")


def stage_latency_recheck(ctx: ScanContext) -> None:
    """More passes of the huge-page sweep over the cache range, each with fresh buffers and a
    new cycle (after the 4 KiB curve, so seconds separate them from the first pass; `--quick`
    has no 4 KiB curve and runs one pass at once). Their samples join the first pass's points
    as they come, and inference reads each size's lower quartile.

    Why: on a shared machine one pass of the sweep can run while an SMT sibling or a neighbour
    uses part of the L2 or L3 for seconds, and each buffer gets its own random host page
    placement; both move a cache edge, and three passes read by their lower quartile hold it
    (figures in docs/validation.md, "Recheck passes and the lower quartile"). Memory-sized points are not repeated:
    they cost the most and no cache edge lies there."""
    curve = ctx.device.curve("latency_hugepage")
    if curve is None or len(curve.points) < 4:
        return
    passes = _plan(ctx).recheck_passes
    h = infer_levels(curve.xs(), curve.lows())
    caches = [lv.size_bytes for lv in h.levels if lv.size_bytes]
    # the cache range as the first pass saw it: up to twice its last cache (the upper part of
    # that cache's edge), at least 4 MiB, and no further than the second point past half of
    # memory's latency (two: a slow last cache's 40 % boundary can lie above that half). On this
    # project's VM memory's latency creeps with size, 150 -> 220 ns, and a first pass can read a
    # "cache" of 100-270 MiB into it: twice that re-swept memory for 16 s.
    limit = max(RECHECK_MIN_BYTES, 2 * max(caches, default=0))
    half_memory = 0.5 * h.levels[-1].latency
    sizes: list[int] = []
    past = 0
    for p in sorted(curve.points, key=lambda q: q.x):
        if p.x > limit or past == 2:
            break
        sizes.append(int(p.x))
        if p.x > RECHECK_MIN_BYTES and p.low > half_memory:
            past += 1
    reps = _plan(ctx).latency_reps
    # the n-th extra pass holds n times its largest buffer, so that it most likely runs on pages
    # no earlier pass used: a new draw of page placement, not only a new cycle (_latency_curve)
    for k in range(passes):
        _latency_curve(ctx, "huge", sizes, reps, f"latency pass {k + 2}",
                       seed=ctx.options.seed + 1000 * (k + 1), into=curve,
                       hold_bytes=(k + 1) * span_bytes(sizes[-1]))
        curve.params["passes"] = k + 2
        curve.params["passes_up_to_bytes"] = sizes[-1]


def stage_levels(ctx: ScanContext) -> None:
    """Inference: the huge-page curve alone decides the levels (declared facts are not read)."""
    curve = ctx.device.curve("latency_hugepage")
    if curve is None or len(curve.points) < 4:
        raise RuntimeError("no latency curve to infer levels from")
    h = infer_levels(curve.xs(), curve.lows(), curve.unit, samples=[p.samples for p in curve.points])
    ctx.device.levels = levels_from_hierarchy(h, ctx.device.clock_ghz)
    for w in h.warnings:
        ctx.device.warn(w.code, w.text, "levels")
    note_near_memory(ctx.device.levels)
    tlb = tlb_reach(ctx.device.curve("latency_hugepage"), ctx.device.curve("latency_4k"))
    if tlb is not None:
        ctx.device.extra.tlb_reach_4k_bytes = tlb


def stage_memory_side(ctx: ScanContext) -> None:
    """Memory seen without page walks: first whether a level next to memory is a cache at all
    (_check_memory_side), then memory's latency from the page-local chase (_page_local_memory),
    beside the random chase's, which on a VM includes a nested page walk per hop."""
    _check_memory_side(ctx)
    _page_local_memory(ctx)


def _check_memory_side(ctx: ScanContext) -> None:
    """Is the cache just before memory a cache, or page walks? (infer/to_result.py)

    A page-local chase (probes/cpu/chase.py region_cycle: each 2 MiB region visited whole, in
    random order, regions in random order) misses the caches like the random chase, a line
    once a lap, but needs one translation per region instead of one per hop. It runs inside the
    candidate's plateau and at 4x its capacity (or the sweep's end), alternating; inference
    judges the ratio. A level judged page walks joins memory, whose latency becomes the median
    of the random chase from inside the candidate on. Repeated while the new last cache
    qualifies."""
    levels = ctx.device.levels
    curve = ctx.device.curve("latency_hugepage")
    if curve is None or not curve.points:
        return
    largest = int(max(curve.xs()))
    while (cand := memory_side_candidate(levels)) is not None:
        memory, before = levels[-1], levels[-3]
        # inside: on its plateau and clear of the level before (a VM's L3 slice moves: 4x it)
        inside = max(cand.size_bytes // 2, 4 * (before.size_bytes or 0))
        if inside >= cand.size_bytes:
            inside = max(cand.size_bytes // 2, 2 * (before.size_bytes or 0))
        # beyond: 4x its capacity, where a cache would hit a quarter of the time at most
        beyond = min(largest, max(4 * cand.size_bytes, inside))
        if inside >= cand.size_bytes or beyond <= cand.size_bytes:
            return  # no size on its plateau past the level before, or none beyond it
        got = _page_local(ctx, [inside, beyond])
        if got is None:
            return
        inside_ns, beyond_ns = got
        ratio = beyond_ns / inside_ns
        cache = is_memory_side_cache(inside_ns, beyond_ns)
        ctx.device.extra.memory_side_checks.append(MemorySideCheck(
            level=cand.name, size_bytes=cand.size_bytes, inside_bytes=inside, beyond_bytes=beyond,
            inside_ns=round(inside_ns, 2), beyond_ns=round(beyond_ns, 2), ratio=round(ratio, 3),
            verdict="cache" if cache else "page walks"))
        span = f"{inside / 2**20:.0f} and {beyond / 2**20:.0f} MiB"
        if cache:
            cand.drop_notes(Code.NEAR_MEMORY)
            cand.note(Code.MEMORY_SIDE_CACHE,
                      f"a memory-side cache: a page-local chase, which page walks hardly touch, "
                      f"still steps {ratio:.2f}x between {span}")
            return
        levels.pop(-2)
        # memory is everything from inside the merged level on: the median of those points (the
        # merged level may be a shelf of the last cache's soft edge, not memory's first plateau)
        merged = sorted(p.low for p in curve.points if p.x >= inside)
        ns = float(statistics.median(merged))
        memory.note(Code.NOT_A_CACHE,
                    f"a level at {cand.size_bytes / 2**20:.0f} MiB ({cand.latency_ns:.0f} ns, the random chase "
                    f"then at {memory.latency_ns:.0f} ns) is not a cache: a page-local chase differs by "
                    f"{ratio:.2f}x between {span}; memory's latency is the median from "
                    f"{inside / 2**20:.0f} MiB on, the rise with size is page walks")
        memory.latency_ns = ns
        memory.latency_cycles = ns * ctx.device.clock_ghz if ctx.device.clock_ghz else None
        # the climb at the sweep's end was translation: memory was reached after all
        memory.drop_notes(Code.MEMORY_NOT_REACHED)
        ctx.device.drop_warnings(Code.MEMORY_NOT_REACHED)


def _page_local_memory(ctx: ScanContext) -> None:
    """Memory's latency from the page-local chase, as a note and in extra["memory_page_local"]:
    the check's measurement beyond the last level it merged, else one size of its own (8x the
    last cache, 32 MiB at least, the sweep's largest at most)."""
    levels = ctx.device.levels
    curve = ctx.device.curve("latency_hugepage")
    if not levels or levels[-1].size_bytes is not None or curve is None or not curve.points:
        return
    memory = levels[-1]
    if not memory.latency_ns or memory.has_note(Code.MEMORY_NOT_REACHED):
        return
    checks = ctx.device.extra.memory_side_checks
    if checks and checks[-1].verdict == "page walks":
        size, ns = checks[-1].beyond_bytes, checks[-1].beyond_ns
    else:
        last_cache = max((lv.size_bytes for lv in levels[:-1] if lv.size_bytes), default=0)
        size = min(int(max(curve.xs())), max(PAGE_LOCAL_MEMORY_MIN_BYTES, 8 * last_cache))
        if size <= 2 * last_cache:
            return  # the sweep ends too close to the last cache
        got = _page_local(ctx, [size])
        if got is None:
            return
        ns = got[0]
    ctx.device.extra.memory_page_local = PageLocalMemory(size_bytes=int(size), latency_ns=round(ns, 2))
    memory.note(
        Code.PAGE_LOCAL_MEMORY,
        f"page-local chase (one address translation per 2 MiB region): {ns:.0f} ns at "
        f"{size / 2**20:.0f} MiB; the random chase's {memory.latency_ns - ns:+.0f} ns beside it is "
        "address translation (page walks)")


def _page_local(ctx: ScanContext, sizes: list[int]) -> list[float] | None:
    """Median ns of the page-local chase at each size, the sizes alternating round by round;
    its samples are kept in the curve "latency_pagelocal". None when memory is short."""
    from memprobe.probes.cpu.chase import ChaseProbe

    try:
        check_memory(sum(sizes))
    except ResourceError:
        ctx.device.warn(Code.NO_MEMORY, "no memory left for the page-local chase beside memory", "memory_side")
        return None
    curve = ctx.device.curve("latency_pagelocal")
    if curve is None:
        curve = Curve("latency_pagelocal", "latency", "size_bytes", "ns", [],
                      {"page_kind": "huge", "region_bytes": PAGE_LOCAL_REGION_BYTES,
                       "label": "page-local chase (memory without page walks)",
                       "method": "page-local pointer chase: 2 MiB regions whole, in random order"})
        ctx.device.curves.append(curve)
    slot = ctx.device.line_size_bytes or 64
    probes = [ChaseProbe(slot, "huge", seed=ctx.options.seed + 77 + k, region_bytes=PAGE_LOCAL_REGION_BYTES)
              for k in range(len(sizes))]
    samples: list[list[float]] = [[] for _ in sizes]
    try:
        for probe, size in zip(probes, sizes):
            probe.setup(size)
        for r in range(PAGE_LOCAL_ROUNDS):
            for k, probe in enumerate(probes):
                samples[k].extend(probe.run(2))
            ctx.progress("memory_side", r + 1, PAGE_LOCAL_ROUNDS, "page-local chase")
    finally:
        for probe in probes:
            probe.close()
    by_size = {int(p.x): p for p in curve.points}
    for size, got in zip(sizes, samples):
        if size in by_size:
            by_size[size].samples.extend(got)
        else:
            by_size[size] = CurvePoint(float(size), got)
            curve.points.append(by_size[size])
    curve.points.sort(key=lambda q: q.x)
    return [statistics.median(s) for s in samples]


def tlb_reach(huge: Curve | None, small: Curve | None, ratio: float = 1.25) -> int | None:
    """First size where the 4 KiB-page curve runs `ratio` above the huge-page curve."""
    if huge is None or small is None or not huge.points or not small.points:
        return None
    hx, hy = np.log2(huge.xs()), np.array(huge.medians())
    for p in small.points:
        ref = float(np.interp(math.log2(p.x), hx, hy))
        if p.median > ratio * ref:
            return int(p.x)
    return None


def _ceiling_stages() -> tuple[Stage, ...]:
    try:
        from memprobe.scan import ceilings
    except ImportError:  # not built yet in this checkout
        return ()
    from memprobe.scan.rates import CPU_RATE_RECHECK_STAGES, CPU_RATE_STAGES

    # the rate table after compute, before the loaded latency (quick: right after compute); its
    # products' second round at the very end
    stages = ceilings.CPU_CEILING_STAGES
    at = next((i + 1 for i, st in enumerate(stages) if st.name == "compute"), len(stages))
    return stages[:at] + CPU_RATE_STAGES + stages[at:] + CPU_RATE_RECHECK_STAGES


CPU_STAGES: tuple[Stage, ...] = (
    Stage("declared", stage_declared, "declared facts (sysfs, cpuinfo)"),
    Stage("clock", stage_clock, "core clock (dependent add/xor chain)"),
    Stage("line", stage_line, "line size (false sharing, stride sweep)"),
    Stage("latency", stage_latency, "latency sweep, huge pages"),
    Stage("latency_4k", stage_latency_4k, "latency sweep, 4 KiB pages (TLB reach)"),
    Stage("latency_recheck", stage_latency_recheck, "latency sweep again over the caches, fresh buffers"),
    Stage("levels", stage_levels, "level inference"),
    Stage("memory_side", stage_memory_side, "memory without page walks: page-local chase"),
)


def scan_cpu(options: ScanOptions, progress: ProgressFn, result: ScanResult, *,
             profile: Profile | None = None) -> bool:
    """Scan the CPU into result.devices["cpu"] by `profile`'s CPU plan (None: resolved from the
    options); the plan in force is recorded in settings.cpu_plan."""
    dev = DeviceResult(kind="cpu", name="CPU")
    result.devices["cpu"] = dev
    profile = profile if profile is not None else options.profile()
    result.settings.cpu_plan = profile.cpu.record()
    ctx = ScanContext(options=options, device=dev, progress=progress, result=result, plan=profile.cpu,
                      profile=profile)
    try:
        return run_stages(CPU_STAGES + _ceiling_stages(), ctx)
    finally:  # stopped or failed before the levels stage: read the levels off what was measured
        _levels_from_partial_curve(ctx)


def _levels_from_partial_curve(ctx: ScanContext) -> None:
    """A scan stopped or failed after the latency sweep began but before its levels were
    inferred still reports the levels its points show, said to come from a partial curve."""
    if ctx.device.levels or ctx.device.curve("latency_hugepage") is None:
        return
    try:
        stage_levels(ctx)
    except Exception:  # too few points, or nothing a level can be read from: no levels
        ctx.device.levels = []
        return
    ctx.device.warn(Code.INTERRUPTED, "levels inferred from the latency curve as far as the scan got before it "
                                      "stopped (memory may not have been reached)", "levels")
