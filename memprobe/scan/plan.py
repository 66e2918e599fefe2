"""The run plan: how far to sweep, how often to repeat, how long to spend, built once from the
options before any probe runs. The default and quick profiles are tables (CPU_PROFILES); a stage
reads its numbers from the plan, never from `options.quick`. The plan in force (with what the
scan reached, such as the sweep's grown top) is written to `settings.cpu_plan`, and the CLI's
help quotes it. Also the helpers every device scan shares: geometric sweeps and the free-memory
guard. Planning is not inference: it chooses which sizes to run, never what a level is."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import psutil

MEMORY_HEADROOM = 4  # refuse a sweep whose largest buffer is above free memory / this
MiB = 1 << 20


@dataclass(frozen=True)
class CpuPlan:
    """Every number a CPU scan runs by. Reps are per point (or per figure)."""

    profile: str
    min_size_bytes: int = 4 << 10
    latency_top_bytes: int = 256 * MiB  # the sweep's first top ...
    latency_grow_limit_bytes: int = 2 << 30  # ... grown up to this while memory is not reached
    # ... and while the stage, with the next doubling (costed as all of the sweep before it),
    # stays within this many seconds: on a busy VM memory's latency creeps with size (page
    # walks) and never flattens (docs/validation.md, "Sweep growth")
    latency_grow_budget_s: float = 12.0
    points_per_octave: int = 4
    latency_reps: int = 5
    latency_4k_reps: int = 3
    recheck_passes: int = 2  # extra passes over the cache range, fresh buffers each
    clock_reps: int = 7
    line_reps: int = 3
    false_sharing_iters: int = 1_000_000
    stride_size_bytes: int = 256 * MiB
    sharing_reps: int = 5
    sharing_target_ns: float = 1e6
    sharing_points_per_octave: int = 4  # the sweep across each edge, alone and under load
    sharing_budget_s: float = 4.0  # per level: a sweep past it stops (big levels cost full chase laps)
    bandwidth_reps: int = 5
    bandwidth_target_ns: float = 1e6
    bandwidth_points_per_octave: int = 2
    bandwidth_sweep_past_last_cache: bool = True  # quick: stop the curve at 2x the last cache
    # memory's STREAM-sized point: single-pass repetitions per thread count, the best kept (quick:
    # two, so one pass beside a busy neighbour is not the figure a `memprobe check` prolog reads)
    memory_reps: int = 3
    compute_reps: int = 5
    fma_target_ns: float = 5e6
    gemm_sizes: tuple[int, ...] = (256, 512, 1024)
    loaded_reps: int = 5
    loaded_target_ns: float = 4e6
    loaded_kernels: tuple[str, ...] = ("read", "triad")
    max_size_bytes: int | None = None  # the user's cap on the latency sweep (no growth then)

    def record(self) -> dict:
        """The plan as scan.json's settings.cpu_plan holds it (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


CPU_PROFILES: dict[str, CpuPlan] = {
    "default": CpuPlan(profile="default"),
    "quick": CpuPlan(
        profile="quick", latency_top_bytes=128 * MiB, latency_grow_budget_s=5.0, points_per_octave=3,
        latency_reps=3, latency_4k_reps=2, recheck_passes=1, clock_reps=3,
        line_reps=2, false_sharing_iters=300_000, stride_size_bytes=64 * MiB, sharing_reps=3,
        sharing_target_ns=1e6, sharing_points_per_octave=2, sharing_budget_s=0.6, bandwidth_reps=3, bandwidth_target_ns=0.5e6,
        bandwidth_points_per_octave=1, bandwidth_sweep_past_last_cache=False, memory_reps=2, compute_reps=3,
        fma_target_ns=2e6, gemm_sizes=(256, 512)),  # (no loaded-latency stage in quick)
}


def cpu_plan(quick: bool = False, repetitions: int | None = None, max_size_bytes: int | None = None,
             points_per_octave: int | None = None) -> CpuPlan:
    """The profile, with the user's overrides: `repetitions` sets every stage's count."""
    plan = CPU_PROFILES["quick" if quick else "default"]
    over: dict = {}
    if repetitions:
        over.update({f: repetitions for f in ("latency_reps", "latency_4k_reps", "clock_reps", "line_reps",
                                               "sharing_reps", "bandwidth_reps", "compute_reps", "loaded_reps")})
    if max_size_bytes:
        over.update(max_size_bytes=max_size_bytes, latency_top_bytes=max_size_bytes)
    if points_per_octave:
        over["points_per_octave"] = points_per_octave
    return dataclasses.replace(plan, **over) if over else plan


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
