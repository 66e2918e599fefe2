"""The CPU scan end to end at tiny sizes, and what happens when it is interrupted or a probe
fails: the result keeps what was measured and is marked incomplete."""

import json
import math

import pytest

from memprobe import cli
import dataclasses

from memprobe.infer.to_result import note_near_memory
from memprobe.result import Code, Curve, CurvePoint, Declared, DeclaredCache, DeviceResult, Level, ScanResult
from memprobe.scan import ScanContext, ScanOptions, Stage, new_result, run_scan, run_stages
from memprobe.scan import cpu as cpu_scan
from memprobe.scan.plan import sweep_sizes
from hierarchy_sim import SimLevel, geometric_sizes, latency_curve

TINY = dict(quick=True, max_size_bytes=256 << 10, repetitions=1, train=False)


def only_latency_stages(monkeypatch):
    """Keep the test fast: the latency part of the table only (ceilings have their own tests)."""
    names = {"declared", "clock", "line", "latency", "latency_recheck", "levels"}
    monkeypatch.setattr(cpu_scan, "_ceiling_stages", lambda: ())
    monkeypatch.setattr(cpu_scan, "CPU_STAGES", tuple(s for s in cpu_scan.CPU_STAGES if s.name in names))


def test_tiny_scan(monkeypatch):
    only_latency_stages(monkeypatch)
    seen = []
    r = run_scan(ScanOptions(**TINY), lambda *a: seen.append(a[0]))
    assert r.complete, r.devices["cpu"].warnings
    dev = r.devices["cpu"]
    assert dev.clock_ghz and dev.clock_ghz > 0.2
    assert dev.curve("latency_hugepage").points
    assert dev.levels and dev.levels[-1].name == "memory"
    assert {"clock", "latency", "levels"} <= set(seen)
    assert ScanResult.from_json(r.to_json()) == r


def test_interrupt_keeps_what_was_measured(monkeypatch, tmp_path, capsys):
    only_latency_stages(monkeypatch)

    def boom(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(cpu_scan, "CPU_STAGES", cpu_scan.CPU_STAGES[:2] + (Stage("boom", boom, "x"),))
    code = cli.main(["scan", "--out", str(tmp_path), "--quick", "--no-train", "--no-progress"])
    assert code == 130  # 128 + SIGINT
    d = json.loads((tmp_path / "scan.json").read_text())
    assert d["complete"] is False and d["cpu"]["clock_ghz"] > 0
    assert any(w["code"] == "interrupted" for w in d["cpu"]["warnings"])
    assert (tmp_path / "curves.csv").read_text().count("clock") >= 1


def test_failing_probe_marks_incomplete(monkeypatch):
    only_latency_stages(monkeypatch)

    def broken(ctx):
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(cpu_scan, "CPU_STAGES", cpu_scan.CPU_STAGES[:2] + (Stage("broken", broken, "x"),))
    r = run_scan(ScanOptions(**TINY))
    assert r.complete is False
    assert any(w.code == Code.STAGE_FAILED and "probe exploded" in w.text for w in r.devices["cpu"].warnings)
    assert r.devices["cpu"].clock_ghz  # the stage before it is kept


def test_declared_facts_never_feed_inference():
    sizes = geometric_sizes(4096, 128 << 20, 4)
    lat = latency_curve([SimLevel(32 << 10, 1.3), SimLevel(512 << 10, 4.5)], 90.0, sizes)
    levels = []
    for declared in (Declared(caches=[DeclaredCache(1, "Data", 999), DeclaredCache(2, "Unified", 7)]), Declared()):
        dev = DeviceResult("cpu", "x", declared=declared, clock_ghz=3.0)
        dev.curves.append(Curve("latency_hugepage", "latency", "size_bytes", "ns",
                                [CurvePoint(float(s), [float(v)]) for s, v in zip(sizes, lat)]))
        ctx = ScanContext(ScanOptions(), dev, lambda *a: None, new_result(ScanOptions()))
        cpu_scan.stage_levels(ctx)
        levels.append(dev.levels)
    assert levels[0] == levels[1]
    assert levels[0][1].size_bytes == pytest.approx(512 << 10, rel=0.25)
    assert levels[0][0].latency_cycles == pytest.approx(1.3 * 3.0, rel=0.01)


def test_sweep_sizes_are_geometric():
    s = sweep_sizes(4096, 1 << 20, 4)
    assert s[0] == 4096 and s[-1] == 1 << 20 and len(s) == 33
    assert all(b > a for a, b in zip(s, s[1:]))


def test_run_stages_reports_progress_and_timing():
    dev = DeviceResult("cpu", "x")
    ctx = ScanContext(ScanOptions(), dev, lambda *a: None, new_result(ScanOptions()))
    assert run_stages((Stage("noop", lambda c: None, "nothing"),), ctx)
    assert "noop" in dev.extra.stage_seconds


def test_run_stages_records_steal_and_warns_once(monkeypatch):
    """Steal time per stage from /proc/stat readings taken around it; one warning names the
    stages where the host took >= 5 % of a CPU, also when a later stage fails."""
    import memprobe.scan as scan

    readings = iter([{"cpu0": (0, 1000)}, {"cpu0": (30, 1100)},     # busy: 30 of 100 ticks
                     {"cpu0": (30, 1100)}, {"cpu0": (31, 1200)},     # quiet: 1 of 100
                     {"cpu0": (31, 1200)}])                          # fails before its 2nd read
    monkeypatch.setattr(scan, "read_cpu_times", lambda: next(readings))
    monkeypatch.setattr(scan.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    dev = DeviceResult("cpu", "x")
    ctx = ScanContext(ScanOptions(), dev, lambda *a: None, new_result(ScanOptions()))

    def boom(c):
        raise RuntimeError("probe failed")

    stages = (Stage("busy", lambda c: None, ""), Stage("quiet", lambda c: None, ""),
              Stage("fails", boom, ""))
    assert not run_stages(stages, ctx)
    assert dev.extra.stage_steal_percent == {"busy": 30.0, "quiet": 1.0}
    steal_warnings = [w.text for w in dev.warnings if w.code == Code.STEAL]
    assert len(steal_warnings) == 1 and "busy 30 %" in steal_warnings[0]
    assert "quiet 1" not in steal_warnings[0]
    # a second stage list on the same device warns only about its own stages
    readings = iter([{"cpu0": (31, 1200)}, {"cpu0": (31, 1300)}])
    assert run_stages((Stage("later", lambda c: None, ""),), ctx)
    assert len([w for w in dev.warnings if w.code == Code.STEAL]) == 1


def _first_pass_ctx(opts):
    """A device whose first pass (two samples per point, one per octave to 8 MiB) saw a 32 KiB
    L1 and a 256 KiB L2; returns the context, the device and the sizes."""
    dev = DeviceResult("cpu", "x")
    ctx = ScanContext(opts, dev, lambda *a: None, new_result(opts))
    sizes = sweep_sizes(4 << 10, 8 << 20, 1)
    lat = latency_curve([SimLevel(32 << 10, 1.3), SimLevel(256 << 10, 4.5)], 90.0, sizes)
    dev.curves.append(Curve("latency_hugepage", "latency", "size_bytes", "ns",
                            [CurvePoint(float(s), [float(v)] * 2) for s, v in zip(sizes, lat)]))
    return ctx, dev, sizes


def test_recheck_adds_passes_over_the_cache_range(monkeypatch):
    """The extra passes add their samples to the first pass's points up to the cache range
    (at least RECHECK_MIN_BYTES), each pass with a fresh buffer; larger sizes keep one pass."""
    opts = ScanOptions(quick=False, max_size_bytes=8 << 20, repetitions=2, train=False, seed=7)
    ctx, dev, sizes = _first_pass_ctx(opts)
    seeds, holds = [], []
    real = cpu_scan._latency_curve

    def spy(ctx, page_kind, sizes, reps, name, seed=None, into=None, hold_bytes=0):
        seeds.append(seed)
        holds.append(hold_bytes)
        return real(ctx, page_kind, sizes, reps, name, seed, into, hold_bytes)

    monkeypatch.setattr(cpu_scan, "_latency_curve", spy)
    cpu_scan.stage_latency_recheck(ctx)
    curve = dev.curve("latency_hugepage")
    assert [c.name for c in dev.curves] == ["latency_hugepage"]  # the passes join, not add curves
    assert curve.params["passes"] == 3 and len(set(seeds)) == 2 and opts.seed not in seeds
    # each pass holds more memory than the one before: its buffers land on other pages
    assert 0 < holds[0] < holds[1] and holds[0] >= max(s for s in sizes if s <= cpu_scan.RECHECK_MIN_BYTES)
    for p in curve.points:
        want = 6 if p.x <= cpu_scan.RECHECK_MIN_BYTES else 2
        assert len(p.samples) == want, (p.x, p.samples)
    assert curve.params["passes_up_to_bytes"] == max(s for s in sizes if s <= cpu_scan.RECHECK_MIN_BYTES)


def test_interrupted_recheck_keeps_its_samples_and_adds_no_curve(monkeypatch):
    from memprobe.probes.cpu import chase

    opts = ScanOptions(quick=True, max_size_bytes=8 << 20, repetitions=2, train=False)
    ctx, dev, sizes = _first_pass_ctx(opts)
    runs = []
    real = chase.ChaseProbe.run

    def run(self, *a, **k):
        if len(runs) == 3:
            raise KeyboardInterrupt
        runs.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(chase.ChaseProbe, "run", run)
    from memprobe.probes.cpu import buffers

    made = []
    real_alloc = buffers.alloc

    def alloc(*a, **k):
        made.append(real_alloc(*a, **k))
        return made[-1]

    monkeypatch.setattr(buffers, "alloc", alloc)
    with pytest.raises(KeyboardInterrupt):
        cpu_scan.stage_latency_recheck(ctx)
    # the memory the pass held to move onto other pages is given back on Ctrl-C too
    assert made and made[0].array.size == 0
    assert [c.name for c in dev.curves] == ["latency_hugepage"]
    counts = [len(p.samples) for p in dev.curve("latency_hugepage").points]
    assert counts[:3] == [4, 4, 4] and set(counts[3:]) == {2}  # three sizes measured again, kept


def test_recheck_stops_past_half_of_memory_latency(monkeypatch):
    """A first pass whose memory creeps (a spurious 64 MiB "cache" at 150 ns before memory at
    220 ns) must not send the extra passes through memory-sized buffers."""
    opts = ScanOptions(quick=True, max_size_bytes=256 << 20, repetitions=1, train=False)
    dev = DeviceResult("cpu", "x")
    ctx = ScanContext(opts, dev, lambda *a: None, new_result(opts))
    sizes = sweep_sizes(4 << 10, 256 << 20, 2)
    lat = latency_curve([SimLevel(32 << 10, 1.3), SimLevel(512 << 10, 4.0), SimLevel(4 << 20, 18.0),
                         SimLevel(64 << 20, 150.0)], 220.0, sizes)
    dev.curves.append(Curve("latency_hugepage", "latency", "size_bytes", "ns",
                            [CurvePoint(float(s), [float(v)]) for s, v in zip(sizes, lat)]))
    swept = []
    monkeypatch.setattr(cpu_scan, "_latency_curve", lambda ctx, kind, sizes, *a, **k: swept.append(sizes))
    cpu_scan.stage_latency_recheck(ctx)
    assert swept and max(swept[0]) <= 16 << 20, max(swept[0]) >> 20
    assert max(swept[0]) > 4 << 20  # the L3 edge itself is covered


@pytest.mark.parametrize("budget_s, grown_to", [(100.0, 2 << 30), (1.0, 256 << 20), (7.0, 512 << 20)])
def test_sweep_growth_stops_at_its_time_budget(monkeypatch, budget_s, grown_to):
    """A memory latency that never flattens (page walks creeping with size) grows the sweep
    only while the stage, with the next doubling costed as all it spent so far, fits its budget."""
    opts = ScanOptions(quick=False, train=False)
    dev = DeviceResult("cpu", "x")
    ctx = ScanContext(opts, dev, lambda *a: None, new_result(opts))
    clock = [0.0]

    def fake_curve(ctx, kind, sizes, reps, name, seed=None, into=None):
        # cost in proportion to the bytes set up: 1 s per 256 MiB
        clock[0] += sum(sizes) / (256 << 20) / 2
        # an L1 plateau, then a climb of 1.4x per octave that never flattens
        pts = [CurvePoint(float(s), [1.4 ** max(0.0, math.log2(s / (32 << 10)))]) for s in sizes]
        if into is None:
            into = Curve(name, "latency", "size_bytes", "ns", [], {})
            ctx.device.curves.append(into)
        into.points.extend(pts)
        return into

    monkeypatch.setattr(cpu_scan, "_latency_curve", fake_curve)
    monkeypatch.setattr(cpu_scan.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(cpu_scan, "check_memory", lambda b: None)
    ctx.plan = dataclasses.replace(ctx.plan, latency_grow_budget_s=budget_s)
    cpu_scan.stage_latency(ctx)
    assert ctx.state["max_size_bytes"] == grown_to
    assert ctx.result.settings.cpu_plan["latency_top_reached_bytes"] == grown_to
    stopped = [w for w in dev.warnings if w.code == Code.SWEEP_BUDGET]
    assert bool(stopped) == (grown_to < ctx.plan.latency_grow_limit_bytes)


def test_memory_side_levels_get_a_note_not_a_verdict():
    def lv(name, size, ns):
        return Level(name=name, size_bytes=size, latency_ns=ns, latency_cycles=None)

    levels = [lv("L1", 32 << 10, 1.4), lv("L3", 4 << 20, 17.0), lv("L4", 190 << 20, 176.0),
              lv("memory", None, 219.0)]
    note_near_memory(levels)
    assert [bool(x.notes) for x in levels] == [False, False, True, False]
    assert levels[2].notes[0].code == Code.NEAR_MEMORY
    assert len(levels) == 4  # nothing dropped: one curve cannot tell creep from an eDRAM L4
    edram = [lv("L3", 8 << 20, 12.0), lv("L4", 128 << 20, 45.0), lv("memory", None, 85.0)]
    note_near_memory(edram)
    assert not any(x.notes for x in edram)


def _memory_side_ctx(levels_spec, largest, reached=False):
    """A device whose levels are given as (name, size, ns) and whose curve reaches `largest`;
    inference found memory not reached (the curve still climbing) unless `reached`."""
    opts = ScanOptions(train=False)
    dev = DeviceResult("cpu", "x")
    dev.levels = [Level(name=n, size_bytes=s, latency_ns=ns, latency_cycles=ns * 3) for n, s, ns in levels_spec]
    if not reached:
        dev.levels[-1].note(Code.MEMORY_NOT_REACHED, "not reached: last point of the sweep")
        dev.warn(Code.MEMORY_NOT_REACHED, "the curve still climbs at its largest size: main memory was not reached")
    dev.clock_ghz = 3.0
    # the random chase: each level's latency up to its size, memory's beyond, one point per octave
    pts, s = [], 4096
    while s <= largest:
        ns = next((lat for _, size, lat in levels_spec if size and s <= size), levels_spec[-1][2])
        pts.append(CurvePoint(float(s), [ns]))
        s *= 2
    dev.curves.append(Curve("latency_hugepage", "latency", "size_bytes", "ns", pts))
    return ScanContext(opts, dev, lambda *a: None, new_result(opts))


@pytest.mark.parametrize("page_local_step, kept", [(1.0, False), (1.9, True)])
def test_memory_side_check_merges_page_walks_and_keeps_a_cache(monkeypatch, page_local_step, kept):
    """A "cache" 1.3x below memory is checked with a page-local chase: flat there (page walks),
    it joins memory, whose latency becomes its own; a real step (eDRAM-like 1.9x) keeps it."""
    from memprobe.probes.cpu import chase

    M = 1 << 20
    ctx = _memory_side_ctx([("L1", 32 << 10, 1.4), ("L2", 512 << 10, 4.0), ("L3", 4 * M, 17.0),
                            ("L4", 180 * M, 170.0), ("memory", None, 220.0)], 1024 * M)
    seen = []

    def run(self, reps, **k):
        size = self.n_slots * self.slot_bytes
        seen.append((size, self.region_bytes))
        return [90.0 * (page_local_step if size > 180 * M else 1.0)] * reps

    monkeypatch.setattr(chase.ChaseProbe, "run", run)
    monkeypatch.setattr(chase.ChaseProbe, "setup", lambda self, size: setattr(self, "n_slots", size // self.slot_bytes))
    cpu_scan.stage_memory_side(ctx)
    dev = ctx.device
    assert {r for _, r in seen} == {cpu_scan.PAGE_LOCAL_REGION_BYTES}  # the page-local chase only
    sizes = sorted({s for s, _ in seen})
    assert sizes[0] < 180 * M < sizes[1] <= 1024 * M  # inside the plateau, and beyond it
    assert [lv.name for lv in dev.levels] == (["L1", "L2", "L3", "L4", "memory"] if kept else ["L1", "L2", "L3", "memory"])
    check = dev.extra.memory_side_checks[0]
    assert check.verdict == ("cache" if kept else "page walks")
    assert len(dev.curve("latency_pagelocal").points) == 2
    # memory's page-local latency, beside the random chase's: the check's own point past the
    # merged level; none while memory stays "not reached" (the kept cache's curve still climbs)
    if kept:
        assert dev.extra.memory_page_local is None
    else:
        mpl = dev.extra.memory_page_local
        assert mpl.size_bytes > 180 * M and mpl.latency_ns == pytest.approx(90.0)
        assert dev.levels[-1].has_note(Code.PAGE_LOCAL_MEMORY) and dev.levels[-1].has_note(Code.NOT_A_CACHE)
    if kept:
        assert dev.levels[-1].latency_ns == 220.0 and dev.levels[3].notes[-1].code == Code.MEMORY_SIDE_CACHE
    else:
        # memory: the median of the random chase from inside the merged level (90 MiB) on:
        # 128 MiB at 170 ns, 256 MiB-1 GiB at 220 ns
        assert dev.levels[-1].latency_ns == 220.0 and dev.levels[-1].latency_cycles == 660.0
        assert not dev.levels[-1].has_note(Code.MEMORY_NOT_REACHED)
        assert not any(w.code == Code.MEMORY_NOT_REACHED for w in dev.warnings)


def test_memory_side_check_leaves_ordinary_hierarchies_alone_but_reads_memory(monkeypatch):
    from memprobe.probes.cpu import chase

    ctx = _memory_side_ctx([("L1", 32 << 10, 1.4), ("L2", 512 << 10, 4.0), ("L3", 4 << 20, 17.0),
                            ("memory", None, 150.0)], 256 << 20, reached=True)
    sizes = []
    monkeypatch.setattr(chase.ChaseProbe, "setup", lambda self, size: sizes.append(size))
    monkeypatch.setattr(chase.ChaseProbe, "run", lambda self, reps, **k: [95.0] * reps)
    cpu_scan.stage_memory_side(ctx)
    assert len(ctx.device.levels) == 4 and not ctx.device.extra.memory_side_checks
    # only memory's page-local latency is measured: one size, 8x the last cache
    assert sizes == [32 << 20] and ctx.device.extra.memory_page_local.latency_ns == 95.0


def test_a_busy_neighbour_is_recorded_and_warned_about():
    """A CPU-burning process beside a stage: the stage records the other processes' share of a
    CPU and the load average, and the device gets one contention warning naming the stage."""
    import subprocess
    import sys
    import time

    dev = DeviceResult("cpu", "x")
    ctx = ScanContext(ScanOptions(), dev, lambda *a: None, new_result(ScanOptions()))
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<20: pass"])
    try:
        time.sleep(0.3)
        assert run_stages((Stage("beside", lambda c: time.sleep(1.5), ""),), ctx)
    finally:
        burner.kill()
        burner.wait()
    assert dev.extra.stage_others_percent["beside"] >= 50
    assert "beside" in dev.extra.stage_load_average
    busy = [w for w in dev.warnings if w.code == Code.CONTENTION]
    assert len(busy) == 1 and "beside" in busy[0].text


def test_a_scan_stopped_before_its_levels_reads_them_off_the_partial_curve(monkeypatch, capsys):
    """Stopped after the latency sweep but before level inference, the scan still reports the
    levels its points show (as `memprobe infer` reads the same file), with a warning that says
    so; the terminal table then names them instead of "not found"."""
    from pathlib import Path

    from memprobe.report import terminal
    from memprobe.result import ScanResult
    from memprobe.scan import ScanOptions, Stage, new_result
    from memprobe.scan import cpu as cpu_scan

    saved = ScanResult.load(Path(__file__).parent / "data" / "scan_incomplete.json").devices["cpu"]

    def measured(ctx):
        ctx.device.curves = list(saved.curves)
        ctx.device.declared = saved.declared
        ctx.device.clock_ghz = saved.clock_ghz

    def stop(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(cpu_scan, "CPU_STAGES", (Stage("latency", measured, "x"), Stage("stop", stop, "x")))
    monkeypatch.setattr(cpu_scan, "_ceiling_stages", lambda: ())
    options = ScanOptions(quick=True, train=False)
    result = new_result(options)
    with pytest.raises(KeyboardInterrupt):
        cpu_scan.scan_cpu(options, lambda *a: None, result)
    dev = result.devices["cpu"]
    assert [lv.name for lv in dev.levels][:3] == ["L1", "L2", "L3"] and dev.levels[-1].size_bytes is None
    assert any("as far as the scan got" in w.text for w in dev.warnings)
    result.complete = False
    terminal.print_summary(result)
    assert "not found" not in capsys.readouterr().out


def test_a_clock_repetition_without_a_valid_timing_still_reads_back(monkeypatch, tmp_path):
    """A preempted clock repetition has no GHz: it is counted in the curve's params, and the
    scan reads back what it wrote (a NaN sample once made the file unreadable)."""
    import math

    from memprobe.probes.cpu import chase
    from memprobe.result import ScanResult
    from memprobe.scan import ScanContext, ScanOptions, new_result
    from memprobe.scan import cpu as cpu_scan
    from memprobe.result import DeviceResult

    monkeypatch.setattr(chase, "clock_samples", lambda reps: [3.0, math.nan, 3.2])
    options = ScanOptions(quick=True, train=False)
    result = new_result(options)
    dev = DeviceResult("cpu", "CPU")
    result.devices["cpu"] = dev
    ctx = ScanContext(options=options, device=dev, progress=lambda *a: None, result=result)
    cpu_scan.stage_clock(ctx)
    assert dev.clock_ghz == 3.1 and dev.curve("clock").params["repetitions_without_a_valid_timing"] == 1
    result.save(tmp_path / "scan.json")
    assert ScanResult.load(tmp_path / "scan.json").devices["cpu"].clock_ghz == 3.1
