"""The run profile, before stage 1 of the flow: every number a scan and the training study run
by (how far to sweep, how often to repeat, how long to spend), one typed record per profile in
one table (PROFILES: "default" and "quick"). `resolve_profile` applies the user's overrides
(repetitions, max size, points per octave) once, at the start of a scan or of `memprobe train`;
every stage and the study then read their numbers from the resolved profile, never from a
`quick` flag. What was in force is recorded in scan.json's settings (`cpu_plan`, `gpu_plan`,
`training_plan`), and the CLI's help quotes it. Planning is not inference: a profile chooses
which sizes and points to run, never what a level is."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MiB = 1 << 20


def _record(plan: Any) -> dict[str, Any]:
    """A plan as scan.json's settings hold it (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(plan).items()}


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
    stages_left_out: tuple[str, ...] = ()  # stage names of scan/cpu.py's table not run

    def record(self) -> dict:
        """The plan as scan.json's settings.cpu_plan holds it (tuples as lists)."""
        return _record(self)


@dataclass(frozen=True)
class GpuProfile:
    """The numbers a real GPU's scan runs by; scan/gpu.py's `make_plan` turns them, with the
    declared facts (SM count, L2 size, free memory), into the GpuPlan recorded in
    settings.gpu_plan. Under the simulator the plan is its own tiny "sim" one, but for
    `sim_points_per_octave`, `max_size_bytes` and `stages_left_out`."""

    profile: str
    points_per_octave: int = 4
    latency_reps: int = 3
    hops_min: int = 8192
    hops_max: int = 32768
    warm_cap: int = 131072
    partition_hops: int = 4096
    partition_sm_count: int = 4
    sharing_hops: int = 16384
    bw_reps: int = 5
    bw_target_s: float = 0.002
    bw_sweep: bool = True  # the bandwidth curve across sizes beside the per-level figures
    fma_target_s: float = 0.02
    gemm_n: int = 8192
    transfer_steps: int = 9  # host<->device sizes 4 KiB x 4^k: up to 256 MiB (quick: 64 MiB)
    transfer_reps: int = 5
    clock_reps: int = 5
    sim_points_per_octave: int = 1  # the simulator's sweep (its kernels run as Python)
    max_size_bytes: int | None = None  # the user's cap on the latency sweep
    stages_left_out: tuple[str, ...] = ()  # stage names of scan/gpu.py's table not run

    def record(self) -> dict:
        return _record(self)


@dataclass(frozen=True)
class TrainingPlan:
    """The training study's schedule and budgets (train/sweep.py, train/family_sweep.py,
    scan/training.py): which MLP points are planned, how many timed steps each gets in how many
    rounds (the model's inputs are measured again each round), and the wall-clock budgets."""

    profile: str
    steps: int = 20  # timed steps per MLP point ...
    rounds: int = 4  # ... taken in this many rounds over all points: see run_device_sweep
    batches: tuple[int, ...] = (1, 16, 256)
    multiples: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)  # of each level's capacity
    one_thread: bool = True  # the CPU's one-thread points beside the all-thread ones
    # the MLP sweep per device: its points and the model's inputs measured in each round (the
    # MNIST epoch and the first, untimed pass over the inputs come on top: 2-3 s here); the
    # study's target is <= 30 s (quick: <= 8 s)
    cpu_sweep_budget_s: float = 10.0  # the CPU study within 15 s with its MNIST epoch
    gpu_sweep_budget_s: float = 30.0
    # per CNN/transformer sweep, `memprobe train`: each point's distinct kernels are replayed warm
    # and cold before its steps are timed, so a sweep's two dozen points take minutes
    family_budget_s: float = 150.0
    scan_family_budget_s: float = 20.0  # per CNN/transformer sweep inside a scan (--train-models)
    mnist_limit_s: float = 10.0  # the MNIST-shaped epoch stops here, its time extrapolated

    def sweep_budget_s(self, device: str) -> float:
        return self.gpu_sweep_budget_s if device == "gpu" else self.cpu_sweep_budget_s

    def record(self) -> dict:
        """The plan as scan.json's settings.training_plan holds it (tuples as lists)."""
        return _record(self)


@dataclass(frozen=True)
class RatePlan:
    """How much the rate table measures (scan/rates.py): ladders of shapes and timed batches."""

    profile: str = "default"
    reps: int = 3  # timed batches per figure (median)
    batch_s: float = 2e-3  # calls per timed batch: enough to reach this
    # m, n, k: a batch's forward and input gradient (m the batch), a weight gradient (k the
    # batch), squares, and a vocabulary projection: a wide output from a small k, 128 MiB of it
    # written past most last caches (the others' outputs fit in an L2 or L3, and such a product
    # ran 20 % below them on one thread of the Zen 5 guest)
    gemm: tuple[tuple[int, int, int], ...] = ((64, 1024, 1024), (1024, 1024, 64), (256, 256, 256),
                                              (512, 512, 512), (1024, 1024, 1024), (2048, 16384, 256))
    bmm: tuple[tuple[int, int, int, int], ...] = ((12, 128, 128, 64), (12, 128, 64, 128))  # batch, m, n, k
    conv: tuple[tuple[int, int, int, int, int, int], ...] = ((8, 32, 64, 32, 3, 1), (8, 128, 128, 8, 1, 1))
    attention: tuple[tuple[int, int, int], ...] = ((8, 128, 64), (8, 512, 64))  # batch x heads, seq, head dim
    optimizers: tuple[str, ...] = ("sgd", "adamw")
    # memory's working set for the element-wise classes: at least 2x the largest cache, and no
    # more than this (a call must stay some ms)
    memory_max_bytes: int = 128 * MiB


@dataclass(frozen=True)
class Profile:
    """One profile: the CPU scan's plan, the GPU scan's numbers and the training study's plan."""

    name: str
    cpu: CpuPlan
    gpu: GpuProfile
    training: TrainingPlan
    rates: RatePlan

    def stages_left_out(self, device_kind: str) -> tuple[str, ...]:
        return (self.gpu if device_kind == "gpu" else self.cpu).stages_left_out


PROFILES: dict[str, Profile] = {
    "default": Profile("default", CpuPlan(profile="default"), GpuProfile(profile="default"),
                       TrainingPlan(profile="default"), RatePlan(profile="default")),
    "quick": Profile(
        "quick",
        CpuPlan(
            profile="quick", latency_top_bytes=128 * MiB, latency_grow_budget_s=5.0, points_per_octave=3,
            latency_reps=3, latency_4k_reps=2, recheck_passes=1, clock_reps=3,
            line_reps=2, false_sharing_iters=300_000, stride_size_bytes=64 * MiB, sharing_reps=3,
            sharing_target_ns=1e6, sharing_points_per_octave=2, sharing_budget_s=0.6, bandwidth_reps=3,
            bandwidth_target_ns=0.5e6, bandwidth_points_per_octave=1, bandwidth_sweep_past_last_cache=False,
            memory_reps=2, compute_reps=3, fma_target_ns=2e6, gemm_sizes=(256, 512),
            stages_left_out=("latency_4k", "loaded_latency")),
        GpuProfile(
            profile="quick", points_per_octave=2, latency_reps=2, hops_min=4096, hops_max=16384, warm_cap=65536,
            partition_hops=2048, partition_sm_count=2, sharing_hops=8192, bw_reps=3, bw_target_s=0.001,
            bw_sweep=False, fma_target_s=0.01, gemm_n=4096, transfer_steps=8, transfer_reps=3, clock_reps=3,
            stages_left_out=("sharing",)),
        # a point below and above each edge at two batches, all threads only, one round (each
        # round measures the inputs again, ~0.3 s per thread count on a 2-vCPU guest), six steps
        TrainingPlan(
            profile="quick", steps=6, rounds=1, batches=(16, 256), multiples=(0.5, 2.0), one_thread=False,
            cpu_sweep_budget_s=1.5, gpu_sweep_budget_s=6.0,  # the quick study within ~3 s, epoch included
            mnist_limit_s=3.0),
        RatePlan(profile="quick", reps=2, batch_s=0.5e-3,
                      gemm=((64, 1024, 1024), (1024, 1024, 64), (256, 256, 256), (512, 512, 512)),
                      bmm=((12, 128, 128, 64),), conv=((8, 32, 64, 32, 3, 1),), attention=((8, 128, 64),),
                      memory_max_bytes=64 << 20)),
}


def resolve_profile(name: str = "default", repetitions: int | None = None, max_size_bytes: int | None = None,
                    points_per_octave: int | None = None) -> Profile:
    """PROFILES[name] with the user's overrides: `repetitions` sets every CPU stage's count and
    the GPU's latency and bandwidth counts; `max_size_bytes` caps both latency sweeps (the CPU's
    does not grow then); `points_per_octave` sets both latency sweeps' density."""
    try:
        base = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r} (choose from {', '.join(PROFILES)})") from None
    cpu: dict[str, Any] = {}
    gpu: dict[str, Any] = {}
    if repetitions:
        cpu.update({f: repetitions for f in ("latency_reps", "latency_4k_reps", "clock_reps", "line_reps",
                                              "sharing_reps", "bandwidth_reps", "compute_reps", "loaded_reps")})
        gpu.update(latency_reps=repetitions, bw_reps=repetitions)
    if max_size_bytes:
        cpu.update(max_size_bytes=max_size_bytes, latency_top_bytes=max_size_bytes)
        gpu.update(max_size_bytes=max_size_bytes)
    if points_per_octave:
        cpu.update(points_per_octave=points_per_octave)
        gpu.update(points_per_octave=points_per_octave, sim_points_per_octave=points_per_octave)
    return dataclasses.replace(base, cpu=dataclasses.replace(base.cpu, **cpu),
                               gpu=dataclasses.replace(base.gpu, **gpu))
