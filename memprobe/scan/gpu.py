"""Stages 1-4 of the flow for the GPU, as a table of stages (like scan/cpu.py): declared facts,
measured SM clock, latency sweeps through L1 (`ld.global.ca`) and around it (`ld.global.cg`),
level inference (the same `infer_levels`, through `levels_from_curve`), near/far L2 halves per
SM, per-SM vs shared levels, shared memory, bandwidth per level, compute, host<->device link.

This module is the one place GPU probe outputs (clock64 cycles, globaltimer ns, seconds, bytes,
FLOPs) become cycles/hop, ns/hop, GB/s and FLOP/s. Curves are appended to the DeviceResult as
they are measured, so Ctrl-C keeps them.

No usable GPU (numba-cuda missing, no driver, no device, the simulator on): no "gpu" device is
added, one line goes to `result.warnings`, and the call returns True (the CPU report is still
complete). Tests pass `device=` (a fake device with CUDA attribute names) to run every stage
under the simulator at tiny sizes; see tests/test_gpu_sim.py.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from memprobe.infer.sharing import SHARED_RATIO, judge_sharing
from memprobe.infer.to_result import levels_from_curve
from memprobe.profile import GpuProfile, Profile
from memprobe.result import (BandwidthTable, BypassLevel, Code, ComputeCeilings, Curve, CurvePoint, Declared,
                             DeviceResult, GemmCeiling, HostLink, L2PartitionPair, L2Partitions, L2PartitionSm,
                             Level, ScanResult, SharedMemory, SharingEvidence, TheoreticalPeak)
from memprobe.scan import ProgressFn, ScanContext, ScanOptions, Stage, run_stages

KiB, MiB = 1 << 10, 1 << 20
SPLIT_RATIO = 1.3  # far/near cluster ratio above which the L2 halves count as seen


# ---- plan: sizes and counts, from the profile and the declared facts (only how far to sweep,
# never a level) --------------------------------------------------------------------------------
@dataclass
class GpuPlan:
    profile: str
    sim: bool
    sm_count: int
    max_threads_per_sm: int
    latency_sizes: list[int]
    latency_reps: int
    hops_min: int
    hops_max: int
    warm_cap: int
    partition_bytes: int
    partition_hops: int
    partition_sms: list[int]
    sharing_sms: list[int]
    sharing_hops: int
    bw_reps: int
    bw_target_s: float
    hbm_ws_bytes: int
    bw_sweep_sizes: list[int]
    smem_hops: int
    smem_target_s: float
    fma_target_s: float
    gemm_n: int
    transfer_sizes: list[int]
    transfer_reps: int
    clock_spin_ns: int
    clock_reps: int
    stages_left_out: list[str] = dataclasses.field(default_factory=list)  # the profile's, not run

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _spread_sms(sm_count: int, k: int) -> list[int]:
    """k SM ids spread over the range (different GPCs, likely different L2 halves)."""
    return sorted({(i * sm_count) // k for i in range(min(k, sm_count))})


def make_plan(declared: Declared, profile: GpuProfile, sim: bool) -> GpuPlan:
    """The GPU plan from the profile's numbers (memprobe/profile.py, overrides applied) and the
    declared facts; under the simulator a tiny "sim" plan (kernels run as Python)."""
    from memprobe.scan.plan import sweep_sizes

    pr = profile
    g = declared.gpu
    sms = int((g.sm_count if g else None) or 1)
    tps = int((g.max_threads_per_sm if g else None) or 2048)
    l2 = next((c.size_bytes for c in declared.caches if c.level == 2 and c.size_bytes), None) or 50 * MiB
    left_out = list(pr.stages_left_out)
    if sim:  # tiny: the simulator runs each thread as Python
        top = int(pr.max_size_bytes or min(4 * l2, 32 * KiB))
        return GpuPlan(
            profile="sim", sim=True, sm_count=sms, max_threads_per_sm=tps,
            latency_sizes=sweep_sizes(4 * KiB, top, pr.sim_points_per_octave, align=128), latency_reps=2,
            hops_min=16, hops_max=64, warm_cap=64, partition_bytes=8 * KiB, partition_hops=32,
            partition_sms=_spread_sms(sms, 2), sharing_sms=_spread_sms(sms, 2), sharing_hops=16,
            bw_reps=2, bw_target_s=0.0, hbm_ws_bytes=16 * KiB, bw_sweep_sizes=[8 * KiB],
            smem_hops=16, smem_target_s=0.0, fma_target_s=0.0, gemm_n=0,
            transfer_sizes=[4 * KiB, 16 * KiB], transfer_reps=2, clock_spin_ns=1000, clock_reps=2,
            stages_left_out=left_out)
    top = int(pr.max_size_bytes or max(4 * l2, 64 * MiB))
    free = g.memory_free_bytes if g else None
    if free:
        top = min(top, int(free) // 4)
    hbm_ws = max(4 * l2, 512 * MiB)
    if free:
        hbm_ws = min(hbm_ws, int(free) // 4)
    return GpuPlan(
        profile=pr.profile, sim=False, sm_count=sms, max_threads_per_sm=tps,
        latency_sizes=sweep_sizes(4 * KiB, top, pr.points_per_octave, align=128),
        latency_reps=pr.latency_reps,
        hops_min=pr.hops_min, hops_max=pr.hops_max, warm_cap=pr.warm_cap,
        partition_bytes=4 * MiB, partition_hops=pr.partition_hops,
        partition_sms=_spread_sms(sms, pr.partition_sm_count), sharing_sms=_spread_sms(sms, 4),
        sharing_hops=pr.sharing_hops,
        bw_reps=pr.bw_reps, bw_target_s=pr.bw_target_s,
        hbm_ws_bytes=hbm_ws,
        bw_sweep_sizes=[s for s in (MiB << k for k in range(12)) if s <= hbm_ws] if pr.bw_sweep else [],
        smem_hops=4096, smem_target_s=0.002, fma_target_s=pr.fma_target_s, gemm_n=pr.gemm_n,
        transfer_sizes=[4 * KiB << (2 * k) for k in range(pr.transfer_steps)],  # 4 KiB .. 64/256 MiB
        transfer_reps=pr.transfer_reps, clock_spin_ns=5_000_000, clock_reps=pr.clock_reps,
        stages_left_out=left_out)


# ---- helpers ---------------------------------------------------------------------------------
def _plan(ctx: ScanContext) -> GpuPlan:
    return ctx.plan


def _clock_ghz(ctx: ScanContext) -> float | None:
    return ctx.device.clock_ghz


def _med(xs) -> float:
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return statistics.median(xs) if xs else math.nan


def _best(xs) -> float:
    """Highest rate: a ceiling (DESIGN: best for a ceiling); every sample stays in the curve."""
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return max(xs) if xs else math.nan


def _gbs(bytes_moved: int, seconds: float) -> float:
    return bytes_moved / seconds / 1e9 if seconds > 0 else math.nan


def _level(ctx: ScanContext, name: str) -> Level | None:
    return next((lv for lv in ctx.device.levels if lv.name == name), None)


def _level_bytes(ctx: ScanContext, which: str) -> tuple[int, str]:
    """Inferred size of 'L1' (L1-path curve) or 'L2' (L1-bypass curve), else the declared one,
    with where it came from. Only picks working-set sizes; the levels stay as inferred."""
    inferred = ctx.state.get(f"{which.lower()}_bytes")
    if _plan(ctx).sim:  # the simulator's curves are counts: keep working sets tiny
        return 8 * KiB, "simulator (fixed)"
    if inferred:
        return int(inferred), "inferred"
    dec = next((c.size_bytes for c in ctx.device.declared.caches if c.label.rstrip("d") == which), None)
    if dec:
        return int(dec), "declared (not inferred)"
    return (128 * KiB if which == "L1" else 32 * MiB), "default (neither inferred nor declared)"


# ---- stages ----------------------------------------------------------------------------------
def stage_declared(ctx: ScanContext) -> None:
    from memprobe.platform.gpu import declared_gpu, nvml_facts
    from memprobe.probes.gpu.clock import SIMULATOR

    dev = ctx.state["cuda_device"]
    mem = None
    if not SIMULATOR:
        try:
            from numba import cuda

            mem = cuda.current_context().get_memory_info()
        except Exception:
            mem = None
    d = declared_gpu(dev, memory_info=mem, nvml={} if SIMULATOR else nvml_facts())
    ctx.device.declared = d
    ctx.device.name = d.model or "NVIDIA GPU"
    ctx.plan = make_plan(d, ctx.profile.gpu, SIMULATOR)
    ctx.result.settings.gpu_plan = ctx.plan.record()
    if SIMULATOR:
        ctx.device.warn(Code.SIMULATOR, "CUDA simulator: every figure of this device is a logic check, "
                                        "not a measurement", "declared")


def stage_clock(ctx: ScanContext) -> None:
    """SM clock = clock64 delta / globaltimer delta while one thread spins (idle-load clock)."""
    from memprobe.probes.gpu.clock import clock_samples

    p = _plan(ctx)
    cyc, ns = clock_samples(p.clock_reps, p.clock_spin_ns)
    ghz = [c / n if n else math.nan for c, n in zip(cyc, ns)]
    ctx.device.curves.append(Curve("clock", "clock", "repetition", "GHz",
                                   [CurvePoint(float(i), [v]) for i, v in enumerate(ghz)],
                                   {"method": "%clock64 delta / %globaltimer delta, one thread spinning",
                                    "spin_ns": p.clock_spin_ns}))
    good = [v for v in ghz if math.isfinite(v) and v > 0]
    ctx.device.clock_ghz = statistics.median(good) if good else None


def chase_hops(n_slots: int, plan: GpuPlan) -> int:
    """Hops per timed repetition: two laps, within [hops_min, hops_max], a multiple of 8."""
    return max(plan.hops_min, min(plan.hops_max, 2 * n_slots)) // 8 * 8


def stage_latency(ctx: ScanContext) -> None:
    from memprobe.probes.gpu.latency import GpuChaseProbe

    p = _plan(ctx)
    target = int(ctx.options.gpu_latency_sm)
    for path, what in (("ca", "ld.global.ca: default caching, through L1"),
                       ("cg", "ld.global.cg: L1 bypassed, L2 only")):
        params = {"load": what, "slot_bytes": 128, "method": "one thread, Sattolo pointer chase",
                  "target_sm": target}
        cyc_curve = Curve(f"latency_{path}_cycles", "latency", "size_bytes", "cycles", [], dict(params))
        ns_curve = Curve(f"latency_{path}_ns", "latency", "size_bytes", "ns", [], dict(params))
        ctx.device.curves += [cyc_curve, ns_curve]  # appended first: Ctrl-C keeps what was measured
        probe = GpuChaseProbe(path, seed=ctx.options.seed, sm_count=p.sm_count)
        sms, hop_counts = [], []
        for k, size in enumerate(p.latency_sizes):
            probe.setup(size)
            probe.warm_l2()
            hops = chase_hops(probe.n_slots, p)
            warm = -(-min(probe.n_slots, p.warm_cap) // 8) * 8
            s = probe.run(p.latency_reps, hops, warm, targets=[target])
            if s.sm[0] < 0:  # the target SM got no block this launch: run anywhere
                s = probe.run(p.latency_reps, hops, warm, targets=[-1])
            cyc_curve.points.append(CurvePoint(float(size), [float(c) / s.hops for c in s.cycles[0]]))
            ns_curve.points.append(CurvePoint(float(size), [float(n) / s.hops for n in s.ns[0]]))
            sms.append(s.sm[0])
            hop_counts.append(s.hops)
            ctx.progress(f"latency_{path}", k + 1, len(p.latency_sizes), f"{size / KiB:.0f} KiB")
        probe.close()
        for c in (cyc_curve, ns_curve):
            c.params["sm_per_point"] = sms
            c.params["hops_per_point"] = hop_counts


def chase_clock_ghz(cyc_curve: Curve, ns_curve: Curve) -> float | None:
    """The SM clock during the chase itself: median of cycles/ns over every sample."""
    r = [c / n for pc, pn in zip(cyc_curve.points, ns_curve.points)
         for c, n in zip(pc.samples, pn.samples) if n > 0]
    return statistics.median(r) if r else None


def gpu_levels(ca_cycles: Curve, ca_ns: Curve | None, cg_cycles: Curve | None,
               cg_ns: Curve | None) -> tuple[list[Level], list[BypassLevel], list]:
    """Levels from the L1-path curve (inferred in cycles: the SM clock's unit, immune to clock
    changes), ns from the clock measured during the same chase; the L1-bypass curve's levels
    beside them. Returns (levels, bypass levels, inference warnings)."""
    # best repetition: one pass of a few repetitions on a device no one shares (the CPU's lower
    # quartile is for several passes on a shared machine)
    levels, h = levels_from_curve(ca_cycles, None, statistic="best")
    ghz = chase_clock_ghz(ca_cycles, ca_ns) if ca_ns else None
    for lv in levels:
        lv.latency_ns = lv.latency_cycles / ghz if (lv.latency_cycles and ghz) else None
        if lv.name == "memory":
            lv.note(Code.DEVICE_MEMORY, "device memory (HBM)")
    bypass: list[BypassLevel] = []
    if cg_cycles is not None and len(cg_cycles.points) >= 4:
        ghz_cg = chase_clock_ghz(cg_cycles, cg_ns) if cg_ns else None
        for lv in levels_from_curve(cg_cycles, None, statistic="best")[0]:
            bypass.append(BypassLevel(
                name=lv.name, size_bytes=lv.size_bytes, latency_cycles=lv.latency_cycles,
                latency_ns=lv.latency_cycles / ghz_cg if (lv.latency_cycles and ghz_cg) else None,
                unstable=lv.unstable, size_interval_bytes=lv.size_interval_bytes))
        # the bypass curve's first cache level is L2 (L1 is skipped): note it on the L2 level
        l2 = next((lv for lv in levels if lv.name == "L2"), None)
        if bypass and bypass[0].size_bytes and l2 is not None:
            l2.note(Code.L1_BYPASS_EDGE,
                    f"L1-bypass (ld.global.cg) curve: L2 edge at {bypass[0].size_bytes / MiB:.1f} MiB, "
                    f"{bypass[0].latency_cycles:.0f} cycles")
    return levels, bypass, h.warnings


def stage_levels(ctx: ScanContext) -> None:
    """Inference: the latency curves alone decide the levels (declared facts are not read)."""
    ca, cg = ctx.device.curve("latency_ca_cycles"), ctx.device.curve("latency_cg_cycles")
    if ca is None or len(ca.points) < 4:
        raise RuntimeError("no L1-path latency curve to infer levels from")
    levels, bypass, warns = gpu_levels(ca, ctx.device.curve("latency_ca_ns"), cg,
                                       ctx.device.curve("latency_cg_ns"))
    ctx.device.levels = levels
    for w in warns:
        ctx.device.warn(w.code, w.text, "levels")
    ctx.device.extra.l1_bypass_levels = bypass
    ctx.device.extra.primary_latency_curve = "latency_ca_ns"
    caches = [lv for lv in levels if lv.size_bytes]
    if caches:
        ctx.state["l1_bytes"] = caches[0].size_bytes
    if bypass and bypass[0].size_bytes:
        ctx.state["l2_bytes"] = bypass[0].size_bytes
    elif len(caches) >= 2:
        ctx.state["l2_bytes"] = caches[1].size_bytes


def split_near_far(cycles: np.ndarray) -> dict[str, Any]:
    """Two clusters of per-hop latency (1-D two-means in log space, i.e. Otsu's threshold):
    near and far L2 halves. Reports both and whether the split is real (ratio)."""
    x = np.log(np.maximum(np.asarray(cycles, dtype=float), 1.0))
    xs = np.sort(x)
    n = len(xs)
    if n < 4:
        return {"threshold_cycles": None, "near_cycles": _med(cycles), "far_cycles": None,
                "near_fraction": 1.0, "ratio": 1.0, "split_seen": False}
    csum = np.cumsum(xs)
    best, best_k = -1.0, 1
    for k in range(1, n):  # between-class variance of a split after the k smallest
        m0, m1 = csum[k - 1] / k, (csum[-1] - csum[k - 1]) / (n - k)
        v = k * (n - k) * (m0 - m1) ** 2
        if v > best:
            best, best_k = v, k
    thr = float(np.exp((xs[best_k - 1] + xs[best_k]) / 2))
    c = np.asarray(cycles, dtype=float)
    near, far = c[c <= thr], c[c > thr]
    ratio = float(np.median(far) / np.median(near)) if len(near) and len(far) else 1.0
    return {"threshold_cycles": thr, "near_cycles": float(np.median(near)) if len(near) else None,
            "far_cycles": float(np.median(far)) if len(far) else None,
            "near_fraction": len(near) / n, "ratio": ratio, "split_seen": ratio >= SPLIT_RATIO}


def stage_l2_partitions(ctx: ScanContext) -> None:
    """Per-hop L2 latency (L1 bypassed) from several SMs over the same chain: each address is
    near for some SMs and far for others. Both halves are reported, never one average."""
    from memprobe.probes.gpu.latency import GpuChaseProbe

    p = _plan(ctx)
    probe = GpuChaseProbe("cg", seed=ctx.options.seed + 7, sm_count=p.sm_count)
    probe.setup(p.partition_bytes)
    probe.warm_l2()
    ghz = _clock_ghz(ctx)
    per_sm: list[L2PartitionSm] = []
    classes: dict[int, np.ndarray] = {}
    for k, sm in enumerate(p.partition_sms):
        r = probe.run_per_hop(p.partition_hops, -(-probe.n_slots // 8) * 8, target=sm)
        if r["sm"] < 0:
            ctx.device.warn(Code.NOT_MEASURED, f"l2 partitions: no block landed on SM {sm}; skipped",
                            "l2_partitions")
            continue
        over = float(np.median(r["overhead_cycles"]))
        cyc = r["cycles"].astype(float)
        split = split_near_far(cyc)
        rec = L2PartitionSm(sm=int(r["sm"]), hops=len(cyc), timer_overhead_cycles=over, **split)
        rec.near_ns = rec.near_cycles / ghz if (rec.near_cycles and ghz) else None
        rec.far_ns = rec.far_cycles / ghz if (rec.far_cycles and ghz) else None
        per_sm.append(rec)
        if split["threshold_cycles"]:
            classes[r["sm"]] = cyc > split["threshold_cycles"]
        vals, counts = np.unique(r["cycles"], return_counts=True)
        ctx.device.curves.append(Curve(
            f"l2_hop_cycles_sm{r['sm']}", "histogram", "cycles", "hops",
            [CurvePoint(float(v), [float(c)]) for v, c in zip(vals, counts)],
            {"method": "per-hop clock64 around one ld.global.cg (timer overhead included)",
             "buffer_bytes": p.partition_bytes, "sm": r["sm"]}))
        ctx.progress("l2_partitions", k + 1, len(p.partition_sms), f"SM {sm}")
    pairs = []
    sm_ids = sorted(classes)
    for i, a in enumerate(sm_ids):
        for b in sm_ids[i + 1:]:
            # same chain, same start: hop k loads the same address on both SMs
            pairs.append(L2PartitionPair(sm_a=a, sm_b=b, addresses_classed_differently=float(
                np.mean(classes[a] != classes[b]))))
    parts = ctx.device.extra.l2_partitions = L2Partitions(
        buffer_bytes=p.partition_bytes, load="ld.global.cg", sms=per_sm, pairs=pairs,
        note="per-hop latency includes the clock read + store overhead (timer_overhead_cycles); "
             "an address is 'far' for an SM when its hop is above the two-cluster threshold")
    l2 = _level(ctx, "L2")
    seen = parts.seen()
    if l2 is not None and seen:
        l2.note(Code.NEAR_FAR_L2, "near/far L2 halves (per-hop, median over SMs): near "
                f"{_med([r.near_cycles for r in seen]):.0f} cycles, far "
                f"{_med([r.far_cycles for r in seen]):.0f} cycles")
    probe.close()


def stage_sharing(ctx: ScanContext) -> None:
    """Per SM or shared, measured: k SMs each chase their own buffer of 0.75 x the level at the
    same time. A per-SM level keeps its latency; a shared one overflows (k x 0.75 > 1)."""
    from memprobe.probes.gpu.latency import GpuChaseProbe

    p = _plan(ctx)
    sms = p.sharing_sms
    if len(sms) < 2:
        ctx.device.warn(Code.NOT_MEASURED, "sharing: fewer than 2 SMs, not measured", "sharing")
        return
    for which, path in (("L1", "ca"), ("L2", "cg")):
        size, source = _level_bytes(ctx, which)
        ws = max(4 * KiB, int(0.75 * size)) // 128 * 128
        probe = GpuChaseProbe(path, seed=ctx.options.seed + 11, sm_count=p.sm_count)
        res = {}
        for mode, chains, targets in (("alone", 1, sms[:1]), ("together", len(sms), sms)):
            probe.setup(ws, n_chains=chains)
            probe.warm_l2()
            warm = -(-probe.n_slots // 8) * 8
            s = probe.run(p.latency_reps, p.sharing_hops, warm, targets=targets)
            placed = [j for j, sm in enumerate(s.sm) if sm >= 0]
            res[mode] = {"sms": [s.sm[j] for j in placed],
                         "cycles_per_hop": [float(np.min(s.cycles[j])) / s.hops for j in placed]}
        probe.close()
        alone = _med(res["alone"]["cycles_per_hop"])
        together = _med(res["together"]["cycles_per_hop"])
        ratio = together / alone if alone and math.isfinite(alone) else math.nan
        why = ""
        if len(res["together"]["sms"]) < len(sms):
            verdict = None
            ctx.device.warn(Code.NOT_MEASURED, f"sharing {which}: not every SM got a chain; no verdict",
                            "sharing")
        else:
            lv = _level(ctx, which)
            hi = (lv.size_interval_bytes or [0, lv.size_bytes])[1] if lv is not None and lv.size_bytes else size
            # one figure per side: the SMs' median (the CPU's sides are repetitions of one core)
            got = judge_sharing([alone], [together], ws, len(sms), hi)
            verdict, why = got.verdict, got.why
        ctx.device.extra.sharing[which] = SharingEvidence(
            level=which, size_bytes=ws, other_units=len(res["together"]["sms"]) - 1, unit="cycles",
            latency_alone=alone, latency_loaded=together, ratio=ratio if math.isfinite(ratio) else None,
            threshold=SHARED_RATIO, verdict=verdict, samples_alone=res["alone"]["cycles_per_hop"],
            samples_loaded=res["together"]["cycles_per_hop"], level_size_bytes=size, level_size_source=source,
            note=f"ld.global.{path}: one SM alone, then SMs {res['together']['sms']} each over its own buffer"
                 + (f": {why}" if why else ""))
        lv = _level(ctx, which)
        if lv is not None and verdict:
            lv.sharing = verdict
            words = {"private": "per SM", "shared": "shared by all SMs", "undetermined": "per SM or shared: undetermined"}
            lv.note(Code.SHARING, f"{words[verdict]} (measured: {len(sms)} SMs x {ws / KiB:.0f} KiB each, "
                                  f"latency x{ratio:.2f} vs one SM)")


def stage_shared_memory(ctx: ScanContext) -> None:
    from memprobe.probes.gpu.bandwidth import Launch, SharedMemoryProbe

    p = _plan(ctx)
    ghz = _clock_ghz(ctx)
    probe = SharedMemoryProbe(seed=ctx.options.seed)
    threads = 32 if p.sim else 1024
    launch = Launch(p.sm_count * max(1, p.max_threads_per_sm // threads), threads)
    probe.setup(launch)
    verified = probe.verify()
    hops, cyc = probe.latency(p.smem_hops, p.latency_reps)
    lat = [float(c) / hops for c in cyc]
    ctx.device.curves.append(Curve("shared_latency", "latency", "repetition", "cycles",
                                   [CurvePoint(0.0, lat)],
                                   {"method": "one thread, index chase in shared memory", "hops": hops}))
    passes = _calibrate(lambda n: probe.run(n, 1)[0], p.smem_target_s, p.sim)
    secs = probe.run(passes, p.bw_reps)
    gbs = [_gbs(probe.bytes_read(passes), s) for s in secs]
    probe.close()
    ctx.device.curves.append(Curve("shared_bandwidth_read", "shared_memory", "repetition", "GB/s",
                                   [CurvePoint(0.0, gbs)],
                                   {"blocks": launch.blocks, "threads": launch.threads, "passes": passes}))
    med = _med(gbs)
    g = ctx.device.declared.gpu
    ctx.device.extra.shared_memory = SharedMemory(
        verified=bool(verified), latency_cycles=min(lat) if lat else None,
        latency_ns=min(lat) / ghz if (lat and ghz) else None, read_gbs=med,
        bytes_per_clock_per_sm=med * 1e9 / (p.sm_count * ghz * 1e9) if ghz else None,
        declared_per_block_bytes=g.shared_per_block_bytes if g else None,
        declared_per_block_optin_bytes=g.shared_per_block_optin_bytes if g else None,
        declared_per_sm_bytes=g.shared_per_sm_bytes if g else None)


def _calibrate(run_one, target_s: float, sim: bool, start: int = 1, cap: int = 1 << 20) -> int:
    """Repeat count so one launch lasts about target_s (first call also pays the JIT)."""
    if sim or target_s <= 0:
        return start
    run_one(start)
    t = run_one(start)
    return int(min(cap, max(start, round(start * target_s / max(t, 1e-7)))))


def stage_bandwidth(ctx: ScanContext) -> None:
    """read/write/copy/triad per level: L1 (each block its own slice), L2 (whole grid over
    half the L2) and HBM; threads_all = full occupancy, threads_1 = one block on one SM."""
    from memprobe.probes.gpu.bandwidth import KERNELS, BandwidthProbe, Launch, full_occupancy

    p = _plan(ctx)
    threads = 32 if p.sim else 256
    full = full_occupancy(p.sm_count, p.max_threads_per_sm, threads)
    one = Launch(1, 32 if p.sim else 1024)
    l1, _ = _level_bytes(ctx, "L1")
    l2, _ = _level_bytes(ctx, "L2")
    blocks_per_sm = max(1, full.blocks // p.sm_count)
    targets = [  # (level name, working set bytes, block-local?)
        ("L1", max(4 * KiB, l1 // 2 // blocks_per_sm) * full.blocks, True),
        ("L2", max(8 * KiB, l2 // 2), False),
        ("memory", max(p.hbm_ws_bytes, 2 * l2), False),
    ]
    verified = {}
    curves = {}
    for k in KERNELS:
        for tk in ("threads_all", "threads_1"):
            c = Curve(f"bandwidth_{k.name}_{tk}", "bandwidth", "working_set_bytes", "GB/s", [],
                      {"levels": [], "counting": "STREAM (bytes read + bytes written)",
                       "launch": [], "passes": []})
            curves[(k.name, tk)] = c
            ctx.device.curves.append(c)
    step, total = 0, len(KERNELS) * len(targets)
    for k in KERNELS:
        for lvl_name, ws, block_local in targets:
            for tk, launch in (("threads_all", full), ("threads_1", one)):
                probe = BandwidthProbe()
                lws = ws if tk == "threads_all" or not block_local else ws // full.blocks
                probe.setup(k.name, lws, launch, block_local)
                if lvl_name == "L1" and tk == "threads_all":
                    verified[k.name] = probe.verify()
                passes = _calibrate(lambda n: probe.run(n, 1)[0], p.bw_target_s, p.sim)
                secs = probe.run(passes, p.bw_reps)
                gbs = [_gbs(probe.bytes_moved(passes), s) for s in secs]
                c = curves[(k.name, tk)]
                c.points.append(CurvePoint(float(probe.n_elements * 8 * k.arrays), gbs))
                c.params["levels"].append(lvl_name)
                c.params["launch"].append([launch.blocks, launch.threads, int(block_local)])
                c.params["passes"].append(passes)
                lv = _level(ctx, lvl_name)
                if lv is not None:
                    lv.bandwidth_gbs.setdefault(k.name, {"threads_1": None, "threads_all": None})[tk] = _best(gbs)
            step += 1
            ctx.progress("bandwidth", step, total, f"{k.name} {lvl_name}")
    ctx.device.bandwidth = BandwidthTable(
        statistic="best", counting="STREAM (bytes read + bytes written)",
        threads_1="one block of %d threads on one SM" % one.threads,
        threads_all=f"{full.blocks} blocks x {full.threads} threads (full occupancy)", item="float64",
        verified={k: bool(v) for k, v in verified.items()})
    for lv in ctx.device.levels:
        if lv.bandwidth_gbs and lv.name in ("L1", "L2", "memory"):
            lv.note(Code.BANDWIDTH_SCOPE, "bandwidth threads_1 = one block (one SM), threads_all = all SMs")
    if p.bw_sweep_sizes:
        c = Curve("bandwidth_read_sweep_threads_all", "bandwidth", "working_set_bytes", "GB/s", [],
                  {"method": "read kernel, whole grid, grid-stride"})
        ctx.device.curves.append(c)
        for ws in p.bw_sweep_sizes:
            probe = BandwidthProbe()
            probe.setup("read", ws, full, False)
            passes = _calibrate(lambda n: probe.run(n, 1)[0], p.bw_target_s, p.sim)
            secs = probe.run(passes, max(2, p.bw_reps - 2))
            c.points.append(CurvePoint(float(ws), [_gbs(probe.bytes_moved(passes), s) for s in secs]))


def stage_compute(ctx: ScanContext) -> None:
    from memprobe.probes.gpu.compute import FmaProbe, gemm_samples

    p = _plan(ctx)
    threads = 32 if p.sim else 256
    fma = FmaProbe(p.sm_count * max(1, p.max_threads_per_sm // threads), threads)
    fma.setup()
    verified = fma.verify()
    iters = _calibrate(lambda n: fma.run(n, 1)[0], p.fma_target_s, p.sim, start=256 if not p.sim else 4)
    secs = fma.run(iters, p.bw_reps)
    gflops = [fma.flops(iters) / s / 1e9 for s in secs]
    cyc, ns = fma.clock()
    clk_in = _med([c / n for c, n in zip(cyc, ns) if n > 0])
    g = ctx.device.declared.gpu
    lanes = (g.fp32_lanes_per_sm if g else None) or 128
    ctx.device.curves.append(Curve("compute_fp32_fma", "compute", "repetition", "GFLOP/s",
                                   [CurvePoint(0.0, gflops)],
                                   {"iters": iters, "blocks": fma.blocks, "threads": fma.threads}))
    gemm: list[GemmCeiling] = []
    if p.gemm_n:
        for row in gemm_samples(p.gemm_n, p.bw_reps):
            if "seconds" in row:
                samples = [row["flops"] / s / 1e9 for s in row["seconds"]]
                gemm.append(GemmCeiling(library=str(row.get("library", "")), dtype=str(row.get("dtype", "")),
                                        n=int(row.get("n", p.gemm_n)), gflops=max(samples), samples=samples,
                                        threads="all SMs"))
        if not gemm:
            ctx.device.warn(Code.NO_GEMM, "no tensor-core GEMM ceiling: neither CuPy nor PyTorch is installed",
                            "compute")
    fma.close()
    ghz = _clock_ghz(ctx)
    ctx.device.compute = ComputeCeilings(
        fma={"float32": {"threads_1": None, "threads_all": max(gflops) if gflops else None}},
        fma_samples={"float32": {"threads_all": gflops}}, gemm=gemm, statistic="best",
        method=f"FP32 FMA chains, {fma.blocks} blocks x {fma.threads} threads, {iters} iterations",
        verified=bool(verified), clock_ghz_during_fma=clk_in if math.isfinite(clk_in) else None,
        theoretical=TheoreticalPeak(clock_ghz=ghz, units=p.sm_count, flops_per_cycle_per_unit={"float32": 2 * lanes},
                                    gflops={"float32": p.sm_count * lanes * 2 * ghz if ghz else None}))


def stage_transfers(ctx: ScanContext) -> None:
    from memprobe.probes.gpu.transfer import DIRECTIONS, HOST_KINDS, TransferProbe

    p = _plan(ctx)
    curves = {}
    for d in DIRECTIONS:
        for h in HOST_KINDS:
            c = Curve(f"transfer_{d}_{h}", "transfer", "size_bytes", "GB/s", [],
                      {"method": "synchronous copy, host-timed", "direction": d, "host": h})
            curves[(d, h)] = c
            ctx.device.curves.append(c)
    probe = TransferProbe()
    verified = None
    for k, size in enumerate(p.transfer_sizes):
        probe.setup(size)
        if verified is None:
            verified = probe.verify()
        for (d, h), c in curves.items():
            secs = probe.run(d, h, p.transfer_reps)
            c.points.append(CurvePoint(float(size), [_gbs(size, s) for s in secs]))
        ctx.progress("transfers", k + 1, len(p.transfer_sizes), f"{size / KiB:.0f} KiB")
    probe.close()
    ctx.device.extra.host_link = HostLink(
        verified=verified,
        peak_gbs={f"{d}_{h}": max((pt.median for pt in c.points), default=None) for (d, h), c in curves.items()})


def _gpu_rates(ctx: ScanContext) -> None:
    from memprobe.scan.rates import stage_gpu_rates

    stage_gpu_rates(ctx)


GPU_STAGES: tuple[Stage, ...] = (
    Stage("declared", stage_declared, "declared GPU facts (CUDA attributes, NVML)"),
    Stage("clock", stage_clock, "SM clock (clock64 / globaltimer)"),
    Stage("latency", stage_latency, "latency sweep, L1 path and L1 bypassed"),
    Stage("levels", stage_levels, "level inference"),
    Stage("l2_partitions", stage_l2_partitions, "near/far L2 halves per SM"),
    Stage("sharing", stage_sharing, "per-SM vs shared levels"),
    Stage("shared_memory", stage_shared_memory, "shared memory latency and bandwidth"),
    Stage("bandwidth", stage_bandwidth, "read/write/copy/triad per level"),
    Stage("compute", stage_compute, "FP32 FMA and GEMM ceilings"),
    Stage("transfers", stage_transfers, "host<->device bandwidth"),
    # PyTorch on CUDA where it sees the GPU; a no-op otherwise (scan/rates.stage_gpu_rates)
    Stage("rates", _gpu_rates, "per-op rates through PyTorch on CUDA"),
)


def scan_gpu(options: ScanOptions, progress: ProgressFn, result: ScanResult, *,
             device: Any = None, profile: Profile | None = None) -> bool:
    """Scan the GPU into result.devices["gpu"] by `profile`'s GPU numbers (None: resolved from
    the options). Without a usable GPU: one warning line, no gpu device, True. `device`: a
    device object to read attributes from (tests: a fake device, with the simulator on); None =
    numba.cuda's current device after `gpu_available()` said yes."""
    if device is None:
        from memprobe.platform.gpu import gpu_available

        ok, why = gpu_available()
        if not ok:
            result.warn(Code.NO_GPU, f"no GPU: {why}")
            return True
        from numba import cuda

        device = cuda.get_current_device()
    dev = DeviceResult(kind="gpu", name="GPU")
    result.devices["gpu"] = dev
    ctx = ScanContext(options=options, device=dev, progress=progress, result=result,
                      state={"cuda_device": device}, profile=profile)
    return run_stages(GPU_STAGES, ctx)
