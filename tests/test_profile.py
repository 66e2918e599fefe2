"""The run profile (memprobe/profile.py): one typed record per profile in one table, resolved once
per scan with the user's overrides, recorded in settings, and the only place `quick` and
`default` differ: every stage and the training study read the resolved profile, never a flag."""

import ast
import dataclasses
from pathlib import Path

import pytest

from memprobe.profile import PROFILES, CpuPlan, GpuProfile, Profile, TrainingPlan, resolve_profile
from memprobe.result import DeviceResult, ScanResult
from memprobe.scan import ScanContext, ScanOptions, Stage, new_result, run_scan, run_stages

PKG = Path(__file__).resolve().parent.parent / "memprobe"


def test_one_table_of_typed_profiles():
    assert list(PROFILES) == ["default", "quick"]
    for name, p in PROFILES.items():
        assert isinstance(p, Profile) and p.name == name
        assert isinstance(p.cpu, CpuPlan) and isinstance(p.gpu, GpuProfile) and isinstance(p.training, TrainingPlan)
        assert p.cpu.profile == p.gpu.profile == p.training.profile == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.training.steps = 1  # type: ignore[misc]


def test_the_profiles_hold_todays_numbers():
    d, q = PROFILES["default"].training, PROFILES["quick"].training
    assert (d.steps, d.rounds, d.batches, d.one_thread) == (20, 4, (1, 16, 256), True)
    assert (q.steps, q.rounds, q.batches, q.multiples, q.one_thread) == (6, 1, (16, 256), (0.5, 2.0), False)
    assert (d.sweep_budget_s("cpu"), d.sweep_budget_s("gpu"), q.sweep_budget_s("cpu"), q.sweep_budget_s("gpu")) == \
        (10.0, 30.0, 1.5, 6.0)
    assert (d.mnist_limit_s, q.mnist_limit_s) == (10.0, 3.0)
    assert d.family_budget_s == q.family_budget_s == 150.0
    assert d.scan_family_budget_s == q.scan_family_budget_s == 20.0
    assert (PROFILES["default"].gpu.gemm_n, PROFILES["quick"].gpu.gemm_n) == (8192, 4096)
    assert PROFILES["quick"].cpu.latency_top_bytes == 128 << 20


def test_quick_and_default_differ_only_through_the_profile():
    assert ScanOptions().profile() == PROFILES["default"]
    assert ScanOptions(quick=True).profile() == PROFILES["quick"]
    assert resolve_profile("quick") == PROFILES["quick"]
    with pytest.raises(ValueError, match="unknown profile"):
        resolve_profile("slow")


def test_overrides_apply_to_every_sweep_and_leave_the_rest():
    p = ScanOptions(quick=True, repetitions=2, max_size_bytes=8 << 20, points_per_octave=6).profile()
    q = PROFILES["quick"]
    assert p.cpu.latency_reps == p.cpu.bandwidth_reps == p.cpu.loaded_reps == p.cpu.clock_reps == 2
    assert p.cpu.max_size_bytes == p.cpu.latency_top_bytes == 8 << 20 and p.cpu.points_per_octave == 6
    assert p.gpu.latency_reps == p.gpu.bw_reps == 2 and p.gpu.clock_reps == q.gpu.clock_reps
    assert p.gpu.max_size_bytes == 8 << 20 and p.gpu.points_per_octave == p.gpu.sim_points_per_octave == 6
    assert p.training == q.training  # the study has no user overrides
    assert p.cpu.memory_reps == q.cpu.memory_reps and p.cpu.gemm_sizes == q.cpu.gemm_sizes
    assert PROFILES["quick"].cpu.latency_reps == 3  # the table is not changed by resolving


def test_stages_left_out_name_real_stages():
    from memprobe.scan import ceilings, cpu, gpu

    cpu_names = {s.name for s in cpu.CPU_STAGES + ceilings.CPU_CEILING_STAGES}
    gpu_names = {s.name for s in gpu.GPU_STAGES}
    for p in PROFILES.values():
        assert set(p.cpu.stages_left_out) <= cpu_names
        assert set(p.gpu.stages_left_out) <= gpu_names
    assert PROFILES["default"].cpu.stages_left_out == PROFILES["default"].gpu.stages_left_out == ()


@pytest.mark.parametrize("quick_flag,profile_name", [(False, "quick"), (True, "default")])
def test_run_stages_leaves_out_what_the_profile_says_not_what_options_quick_says(quick_flag, profile_name):
    ran = []
    stages = tuple(Stage(n, lambda ctx, n=n: ran.append(n), n) for n in ("latency", "latency_4k", "loaded_latency"))
    opts = ScanOptions(quick=quick_flag, train=False)
    ctx = ScanContext(opts, DeviceResult(kind="cpu", name="CPU"), lambda *a: None, new_result(opts),
                      profile=PROFILES[profile_name])
    assert run_stages(stages, ctx)
    left = PROFILES[profile_name].cpu.stages_left_out
    assert ran == [n for n in ("latency", "latency_4k", "loaded_latency") if n not in left]
    assert ctx.plan == PROFILES[profile_name].cpu


def test_gpu_plan_reads_the_profile():
    from memprobe.result import Declared, DeclaredCache, GpuFacts
    from memprobe.scan.gpu import make_plan

    d = Declared(caches=[DeclaredCache(2, "Unified", 50 << 20)],
                 gpu=GpuFacts(sm_count=132, max_threads_per_sm=2048, memory_free_bytes=70 << 30))
    gp = dataclasses.replace(PROFILES["default"].gpu, latency_reps=9, gemm_n=1234, stages_left_out=("sharing",))
    plan = make_plan(d, gp, sim=False)
    assert (plan.profile, plan.latency_reps, plan.gemm_n, plan.stages_left_out) == ("default", 9, 1234, ["sharing"])
    assert make_plan(d, PROFILES["quick"].gpu, sim=True).stages_left_out == ["sharing"]


@pytest.mark.parametrize("quick", [False, True])
def test_one_profile_per_scan_handed_to_every_part_and_recorded(monkeypatch, quick):
    from memprobe.scan import cpu as cpu_scan
    from memprobe.scan import training as train_scan

    resolved, seen = [], []
    real_profile = ScanOptions.profile
    monkeypatch.setattr(ScanOptions, "profile", lambda self: resolved.append(real_profile(self)) or resolved[-1])
    monkeypatch.setattr(cpu_scan, "CPU_STAGES", ())  # no probe: the plumbing only
    monkeypatch.setattr(cpu_scan, "_ceiling_stages", lambda: ())
    real_cpu = cpu_scan.scan_cpu
    monkeypatch.setattr(cpu_scan, "scan_cpu",
                        lambda o, p, r, profile=None: seen.append(profile) or real_cpu(o, p, r, profile=profile))
    monkeypatch.setattr(train_scan, "scan_training", lambda o, p, r, profile=None: seen.append(profile) or True)
    res = run_scan(ScanOptions(quick=quick, repetitions=2, train=True))
    assert len(resolved) == 1  # resolved once, at the start
    prof = resolved[0]
    assert seen == [prof, prof]  # the same object for the CPU scan and the study
    assert prof.name == ("quick" if quick else "default") and prof.cpu.latency_reps == 2
    assert res.settings.cpu_plan == prof.cpu.record()


def test_the_study_records_its_plan_in_settings():
    from memprobe.scan.training import run_training_study

    res = ScanResult(host="h", started_at="t", devices={"cpu": DeviceResult(kind="cpu", name="CPU")})
    tr = run_training_study(res, "cpu", plan=PROFILES["quick"].training, mnist=False)
    assert res.settings.training_plan == PROFILES["quick"].training.record()
    assert res.settings.training_plan["multiples"] == [0.5, 2.0] and tr.settings["quick"] is True
    back = ScanResult.from_json(res.to_json())
    assert back.settings.training_plan == res.settings.training_plan


def test_the_study_reads_its_budgets_from_the_plan(monkeypatch):
    from memprobe.result import Level
    from memprobe.scan import training as T
    from memprobe.train import sweep as S

    got = {}
    monkeypatch.setattr(S, "run_device_sweep", lambda dres, dev, plan, fw, prog, budget: got.update(
        plan=plan, budget=budget) or {"points": [], "skipped": [], "overhead_s": {}, "gemm_rates": {},
                                      "warnings": [], "blas_threads_control": "none"})
    dev = DeviceResult(kind="cpu", name="CPU", levels=[Level("L1", 32 << 10, 1.0, 3.0)])
    res = ScanResult(host="h", started_at="t", devices={"cpu": dev})
    plan = dataclasses.replace(PROFILES["default"].training, cpu_sweep_budget_s=4.25)
    T.run_training_study(res, "cpu", plan=plan, mnist=False)
    assert got == {"plan": plan, "budget": 4.25}


# `quick` in the scan and training modules: the profile's name where options are read, and docs
ALLOWED_QUICK = {("scan/__init__.py", "profile_name"), ("scan/__init__.py", "new_result")}


def test_no_stage_or_study_branches_on_quick():
    hits = []
    for path in sorted((PKG / "scan").glob("*.py")) + sorted((PKG / "train").glob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        tree = ast.parse(path.read_text())
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(fn):
                bad = ((isinstance(node, ast.Attribute) and node.attr == "quick")
                       or (isinstance(node, ast.Name) and node.id == "quick")
                       or (isinstance(node, ast.arg) and node.arg == "quick"))
                if bad and (rel, fn.name) not in ALLOWED_QUICK:
                    hits.append(f"{rel}:{node.lineno} in {fn.name}")
    assert not hits, hits
