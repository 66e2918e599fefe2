"""Stages 1-4 of the flow, orchestrated: run the probes, keep their raw samples as curves, call
inference, fill one ScanResult. A device's scan is a table of stages (`cpu.CPU_STAGES`); adding a
measurement is one entry. The library never prints: progress goes through a callback.

The numbers every stage runs by come from one profile (memprobe/profile.py), resolved once from
the options at the start of a scan (`ScanOptions.profile()`) and handed to each device's scan and
to the training study; a stage reads its plan, never `options.quick`.

Interruption: a stage that raises, or Ctrl-C, stops the scan; what was measured so far stays in
the result, which is marked incomplete. The caller (CLI) writes it out either way.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from memprobe import __version__
from memprobe.platform.load import (OTHERS_NOTABLE_FRACTION, STEAL_NOTABLE_FRACTION, OthersMeter, load_average,
                                    max_steal_fraction, read_cpu_times)
from memprobe.profile import Profile, resolve_profile
from memprobe.result import Code, DeviceResult, ScanResult, ScanSettings
from memprobe.train.catalog import DEFAULT_STUDY_MODELS

# progress(stage, done, total, message): done/total count steps inside a stage
ProgressFn = Callable[[str, int, int, str], None]


def no_progress(stage: str, done: int, total: int, message: str = "") -> None:
    return None


@dataclass
class ScanOptions:
    device: str = "cpu"  # "cpu" | "gpu" | "all"
    quick: bool = False  # the profile: "quick" or "default" (memprobe/profile.py's PROFILES)
    max_size_bytes: int | None = None  # top of the latency sweeps (default: the plan's, grown)
    repetitions: int | None = None  # per point (default: the plan's profile)
    seed: int = 12345
    train: bool = True
    train_models: tuple[str, ...] = DEFAULT_STUDY_MODELS  # the training study's (train/catalog.STUDY_MODELS)
    points_per_octave: int | None = None
    gpu_latency_sm: int = 0  # the SM the GPU's latency chase runs on

    @property
    def profile_name(self) -> str:
        return "quick" if self.quick else "default"

    def profile(self) -> Profile:
        """The profile these options ask for, with their overrides (resolved once per scan:
        run_scan hands it on)."""
        return resolve_profile(self.profile_name, self.repetitions, self.max_size_bytes, self.points_per_octave)


@dataclass
class ScanContext:
    """What a stage sees: the options, the resolved profile, the device result it fills, and the
    progress callback."""

    options: ScanOptions
    device: DeviceResult
    progress: ProgressFn
    result: ScanResult
    state: dict = field(default_factory=dict)  # hand-over between stages (e.g. inferred levels)
    plan: Any = None  # the device's plan (CpuPlan, GpuPlan); a CPU's is the profile's
    profile: Profile | None = None  # None: resolved from the options (a stage run alone, in tests)

    def __post_init__(self) -> None:
        if self.profile is None:
            self.profile = self.options.profile()
        if self.plan is None and self.device.kind == "cpu":
            self.plan = self.profile.cpu


class StageFn(Protocol):
    def __call__(self, ctx: ScanContext) -> None: ...


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn
    description: str


class ScanStopped(KeyboardInterrupt):
    """A stop asked from outside (Ctrl-C, SIGTERM from a scheduler or `docker stop`, SIGHUP from
    a closed terminal). A KeyboardInterrupt, so every place that keeps what was measured on
    Ctrl-C does so for each of them; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        import signal

        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


def new_result(options: ScanOptions) -> ScanResult:
    from memprobe.platform.cpu import machine_facts
    from memprobe.result import MachineFacts

    return ScanResult(
        machine=MachineFacts(**machine_facts()),
        host=socket.gethostname(),
        started_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        complete=False,
        settings=ScanSettings(device=options.device, quick=options.quick, seed=options.seed,
                              memprobe_version=__version__, repetitions=options.repetitions,
                              max_size_bytes=options.max_size_bytes, train=options.train),
    )


def run_stages(stages, ctx: ScanContext) -> bool:
    """Run stages in order. Returns True when all ran; False (with a warning kept) when one
    failed. KeyboardInterrupt propagates after the partial result is marked.

    Each finished stage leaves its seconds and the host's steal time during it (the largest
    share of one CPU, percent) in the device's extra; stages past STEAL_NOTABLE_FRACTION get one
    warning at the end, however the run ends."""
    seconds = ctx.device.extra.stage_seconds
    steal = ctx.device.extra.stage_steal_percent
    ctx.device.extra.steal_notable_percent = 100 * STEAL_NOTABLE_FRACTION
    ctx.device.extra.others_notable_percent = 100 * OTHERS_NOTABLE_FRACTION
    others = ctx.device.extra.stage_others_percent
    busy: dict[str, float] = {}  # this call's stages beside a busy neighbour: one warning
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    stolen: dict[str, float] = {}  # this call's stages only: one warning per call
    left_out = ctx.profile.stages_left_out(ctx.device.kind)
    try:
        for stage in stages:
            if stage.name in left_out:
                continue
            ctx.progress(stage.name, 0, 1, stage.description)
            t0, cpu0, meter = time.perf_counter(), read_cpu_times(), OthersMeter().start()
            try:
                stage.run(ctx)
            except KeyboardInterrupt:
                ctx.device.warn(Code.INTERRUPTED, f"interrupted during stage '{stage.name}'", stage.name)
                raise
            except Exception as exc:  # a failing probe must not lose what was measured
                tb = traceback.extract_tb(exc.__traceback__)[-1]
                ctx.device.warn(Code.STAGE_FAILED,
                                f"stage '{stage.name}' failed: {exc.__class__.__name__}: {exc} "
                                f"({tb.filename.rsplit('/', 1)[-1]}:{tb.lineno})", stage.name)
                return False
            seconds[stage.name] = round(time.perf_counter() - t0, 3)
            share = meter.share()
            if share is not None:
                others[stage.name] = round(100 * share, 1)
                if share >= OTHERS_NOTABLE_FRACTION:
                    busy[stage.name] = others[stage.name]
            la = load_average()
            if la is not None:
                ctx.device.extra.stage_load_average[stage.name] = la
            frac = max_steal_fraction(cpu0, read_cpu_times(), cpus)
            if frac is not None:
                steal[stage.name] = round(100 * frac, 1)
                if frac >= STEAL_NOTABLE_FRACTION:
                    stolen[stage.name] = steal[stage.name]
            ctx.progress(stage.name, 1, 1, stage.description)
        return True
    finally:
        if busy:
            listed = ", ".join(f"{k} {v:g} %" for k, v in busy.items())
            ctx.device.warn(
                Code.CONTENTION,
                f"other processes on this machine ran beside {listed} of a CPU: those figures can read "
                "slow, and an all-thread figure below one thread's is flagged; --wait-quiet waits for a "
                "quiet machine first")
        if stolen:
            listed = ", ".join(f"{k} {v:g} %" for k, v in stolen.items())
            ctx.device.warn(
                Code.STEAL,
                f"the host took CPU time from this machine (steal) during {listed} of a CPU: those "
                "figures can read slow, and cache edges small; compare with a scan at a quieter time")


def check_plausibility(res: ScanResult) -> None:
    """Flag each device's figures that break physics (infer/plausibility.py) before anything
    (the training model, the report's roofs) reads them as ceilings; one warning per device."""
    from memprobe.infer.plausibility import check_device

    for dev in res.devices.values():
        dev.drop_warnings(Code.IMPLAUSIBLE)
        n = check_device(dev)
        if n:
            dev.warn(Code.IMPLAUSIBLE, f"{n} figure(s) break physics and are flagged (never a roof or a model "
                                       "input): see the flags beside them", "plausibility")


def run_scan(options: ScanOptions, progress: ProgressFn = no_progress,
             result: ScanResult | None = None, *, profile: Profile | None = None) -> ScanResult:
    """Scan the devices asked for into `result` (created if None) and return it, every stage by
    `profile` (None: resolved from the options, once, here).

    The caller may pass its own `result` so that, on KeyboardInterrupt, it still holds the
    partial scan to write out (run_scan re-raises after marking it incomplete).
    """
    from memprobe.scan import cpu as cpu_scan

    res = result if result is not None else new_result(options)
    if profile is None:  # once: every device's stages and the study read this one
        profile = options.profile()
    t0 = time.perf_counter()
    ok = True
    try:
        if options.device in ("cpu", "all", "gpu"):
            # a GPU scan also measures the CPU: the report compares them and a GPU-less machine
            # still gets a CPU report
            ok &= cpu_scan.scan_cpu(options, progress, res, profile=profile)
        if options.device in ("gpu", "all"):
            from memprobe.scan import gpu as gpu_scan

            ok &= gpu_scan.scan_gpu(options, progress, res, profile=profile)
        check_plausibility(res)
        if options.train:
            from memprobe.scan import training as train_scan

            ok &= train_scan.scan_training(options, progress, res, profile=profile)
    except KeyboardInterrupt as exc:
        check_plausibility(res)
        res.complete = False
        how = exc.name if isinstance(exc, ScanStopped) else "SIGINT"
        res.warn(Code.INTERRUPTED, f"scan stopped by {how}: the result holds what was measured so far")
        res.settings.stopped_by = how
        res.duration_s = round(time.perf_counter() - t0, 2)
        raise
    res.complete = bool(ok)
    res.duration_s = round(time.perf_counter() - t0, 2)
    return res
