"""GPU probes and scan, tested without a GPU.

Simulator switch: this module sets NUMBA_ENABLE_CUDASIM=1 *before* numba.cuda is first
imported (numba.cuda fixes its mode at import), then restores the environment so subprocesses
spawned by other tests see the machine as it is. If numba.cuda was already imported in real
mode by an earlier test module, the simulator tests skip with that reason. Tests that need the
real (non-simulator) view of this machine run in a subprocess without the variable.

Under the simulator, kernels run as Python: logic and shapes are checked, never timings (the
clock intrinsics are counters there, see probes/gpu/clock.py). Real-GPU timing tests are
marked `gpu` and skip when no GPU is usable.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

HAVE_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None

_prev = os.environ.get("NUMBA_ENABLE_CUDASIM")
# conftest.py normally imported numba.cuda in simulator mode already; "real" means it did not
_already_real = False
if "numba.cuda" in sys.modules:
    from memprobe.probes.gpu.clock import simulator_enabled as _sim_on

    _already_real = not _sim_on()
# MEMPROBE_REAL_GPU=1 (set by benchmarks/gpu_smoke.sh): leave the simulator off so the
# `gpu`-marked tests see the real device; the simulator tests then skip.
_real_requested = os.environ.get("MEMPROBE_REAL_GPU") == "1"
SIM_OK = False
if HAVE_NUMBA_CUDA and not _already_real and not _real_requested and "numba.cuda" in sys.modules:
    from memprobe.probes.gpu.clock import SIMULATOR

    SIM_OK = SIMULATOR
elif HAVE_NUMBA_CUDA and not _already_real and not _real_requested:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    try:
        from numba import cuda  # noqa: F401  (fixes the simulator mode for this process)
        from memprobe.probes.gpu.clock import SIMULATOR

        SIM_OK = SIMULATOR
    finally:
        if _prev is None:
            os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
        else:
            os.environ["NUMBA_ENABLE_CUDASIM"] = _prev

if _real_requested:
    _why = "MEMPROBE_REAL_GPU=1: simulator tests are off in this run"
elif not HAVE_NUMBA_CUDA:
    _why = "numba-cuda is not installed (pip install numba-cuda: the simulator ships with it)"
elif _already_real:
    _why = "numba.cuda was imported in real mode before this module could switch the simulator on"
else:
    _why = "the CUDA simulator could not be switched on"
sim = pytest.mark.skipif(not SIM_OK, reason=_why)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KiB = 1024
from fake_gpu import FakeDevice  # noqa: E402  (tests/ is on sys.path under pytest)


def _clean_env() -> dict:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return env


# ---- declared facts (no numba.cuda needed) ---------------------------------------------------
def test_declared_from_fake_device():
    from memprobe.platform.gpu import declared_gpu, theoretical_memory_gbs

    d = declared_gpu(FakeDevice(), memory_info=(10 << 30, 80 << 30))
    g = d.gpu
    assert d.model == "Fake H100 (simulator)"
    assert g.compute_capability == "9.0"
    assert g.sm_count == 2 and [(c.label, c.size_bytes, c.scope) for c in d.caches] == [
        ("L1d", 256 * KiB, "per SM"), ("L2", 16 * KiB, "shared by all SMs")]
    assert g.shared_per_block_optin_bytes == 227 * KiB
    assert g.max_threads_per_block is None  # missing attribute: None, not a crash
    assert g.l1_shared_unified_per_sm_bytes == 256 * KiB
    assert g.l1_min_bytes == 28 * KiB
    # H100 SXM: 2619 MHz x 2 x 5120 bit / 8 = 3352 GB/s
    assert g.theoretical_memory_gbs == pytest.approx(3352.3, rel=1e-3)
    assert theoretical_memory_gbs(None, 5120) is None
    assert d.memory_total_bytes == 80 << 30 and d.fma_flops_per_cycle == {"float32": 256}


# ---- this machine, real mode (subprocess: no simulator) -------------------------------------
def test_gpu_available_false_here_one_line():
    code = textwrap.dedent("""
        import json
        from memprobe.platform.gpu import gpu_available
        print(json.dumps(gpu_available()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_clean_env(), timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    ok, why = json.loads(out.stdout.strip().splitlines()[-1])
    if ok:
        pytest.skip(f"this machine has a GPU: {why}")
    assert why and "\n" not in why and len(why) < 200


def test_scan_gpu_without_gpu_adds_one_warning():
    code = textwrap.dedent("""
        import json
        from memprobe.scan import ScanOptions, new_result, no_progress
        from memprobe.platform.gpu import gpu_available
        from memprobe.scan.gpu import scan_gpu
        opts = ScanOptions(device="gpu", quick=True, train=False)
        res = new_result(opts)
        ok = scan_gpu(opts, no_progress, res)
        print(json.dumps({"ok": ok, "devices": list(res.devices), "warnings": [w.text for w in res.warnings],
                          "available": gpu_available()[0]}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_clean_env(), timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r["available"]:
        pytest.skip("this machine has a GPU")
    assert r["ok"] is True
    assert "gpu" not in r["devices"]
    assert len(r["warnings"]) == 1 and r["warnings"][0].startswith("no GPU: ")
    assert "\n" not in r["warnings"][0]


@sim
def test_gpu_available_under_simulator_is_false():
    from memprobe.platform.gpu import gpu_available

    ok, why = gpu_available()
    assert not ok and "simulator" in why


# ---- latency probe ---------------------------------------------------------------------------
@sim
def test_chains_are_single_cycles():
    from memprobe.probes.gpu.latency import build_chains, walk_chain

    img = build_chains(3, 50, 128, 4096, seed=7)
    for j in range(3):
        assert walk_chain(img, 4096, j * 50, 50, 128)
    # a broken chain (two slots swapped into a 2-cycle) is caught
    bad = img.copy()
    bad[0] = 4096  # slot 0 points to itself
    assert not walk_chain(bad, 4096, 0, 50, 128)


@sim
def test_chase_probe_runs_chosen_sms_and_counts_hops():
    from memprobe.probes.gpu.latency import GpuChaseProbe

    p = GpuChaseProbe("ca", sm_count=3, seed=3)
    p.setup(8 * KiB, n_chains=2)
    assert p.n_slots == 64 and p.verify()
    s = p.run(repetitions=2, hops=40, warm_hops=16, targets=[2, 1])
    assert s.hops == 40
    assert s.sm == [2, 1]  # simulator: block k is "SM k"; each chain ran where asked
    assert s.cycles.shape == (2, 2) and s.ns.shape == (2, 2)
    # simulator clock counts one tick per load: a timed region of 40 hops reads 41
    assert np.all(s.cycles == 41)


@sim
def test_per_hop_follows_the_chain():
    from memprobe.probes.gpu.latency import GpuChaseProbe

    p = GpuChaseProbe("cg", sm_count=2, seed=5)
    p.setup(4 * KiB)
    r = p.run_per_hop(20, warm_hops=0, target=1, n_overhead=3)
    assert r["sm"] == 1
    img = p.dbuf.copy_to_host()
    slots = r["slots"]
    assert slots[0] == 0
    for a, b in zip(slots[:-1], slots[1:]):
        assert int(img[a * 16]) // 128 == b  # each hop loaded the successor of the last
    assert np.all(r["cycles"] == 2)  # one load between two clock reads


@sim
def test_sweep_sizes_and_hops():
    from memprobe.scan import ScanOptions
    from memprobe.scan.gpu import chase_hops, make_plan

    from memprobe.result import Declared, DeclaredCache, GpuFacts

    d = Declared(caches=[DeclaredCache(2, "Unified", 50 << 20)],
                 gpu=GpuFacts(sm_count=132, max_threads_per_sm=2048, memory_free_bytes=70 << 30))
    real = make_plan(d, ScanOptions(device="gpu").profile().gpu, sim=False)
    s = real.latency_sizes
    assert s[0] == 4 * KiB and s[-1] >= 4 * (50 << 20)
    assert all(b > a for a, b in zip(s, s[1:]))
    assert len(s) >= 4 * 15  # 4 points per octave over >= 15 octaves
    assert all(x % 128 == 0 for x in s)
    assert chase_hops(10, real) == real.hops_min and chase_hops(10**9, real) == real.hops_max
    quick = make_plan(d, ScanOptions(device="gpu", quick=True).profile().gpu, sim=False)
    assert len(quick.latency_sizes) < len(s)
    tiny = make_plan(d, ScanOptions(device="gpu").profile().gpu, sim=True)
    assert tiny.latency_sizes[-1] <= 32 * KiB


# ---- bandwidth, shared memory, compute, transfers ---------------------------------------------
@sim
@pytest.mark.parametrize("kernel", ["read", "write", "copy", "triad"])
@pytest.mark.parametrize("block_local", [False, True])
def test_bandwidth_kernels_verify(kernel, block_local):
    from memprobe.probes.gpu.bandwidth import KERNELS_BY_NAME, BandwidthProbe, Launch

    p = BandwidthProbe()
    p.setup(kernel, 6 * KiB, Launch(2, 32), block_local=block_local)
    assert p.verify()
    k = KERNELS_BY_NAME[kernel]
    assert p.bytes_moved(3) == p.n_elements * k.bytes_per_element * 3
    assert len(p.run(1, 2)) == 2


def test_kernel_table_counts_like_stream():
    pytest.importorskip("numba_cuda")
    if not SIM_OK:
        pytest.skip(_why)
    from memprobe.probes.gpu.bandwidth import KERNELS, full_occupancy

    assert {k.name: k.bytes_per_element for k in KERNELS} == {
        "read": 8, "write": 8, "copy": 16, "triad": 24}
    launch = full_occupancy(132, 2048, 256)
    assert launch.blocks * launch.threads == 132 * 2048


@sim
def test_shared_memory_compute_transfer_verify():
    from memprobe.probes.gpu.bandwidth import Launch, SharedMemoryProbe
    from memprobe.probes.gpu.compute import FmaProbe
    from memprobe.probes.gpu.transfer import TransferProbe

    sm = SharedMemoryProbe()
    sm.setup(Launch(2, 32))
    assert sm.verify() and len(sm.run(2, 2)) == 2 and sm.bytes_read(2) == 2 * 4096 * 4 * 2
    f = FmaProbe(2, 32)
    f.setup()
    assert f.verify(3) and f.flops(10) == 2 * 8 * 10 * 64
    t = TransferProbe()
    t.setup(4 * KiB)
    assert t.verify()
    assert len(t.run("h2d", "pinned", 2)) == 2


# ---- inference and the scan --------------------------------------------------------------------
def _curve(name, unit, sizes, values):
    from memprobe.result import Curve, CurvePoint

    return Curve(name, "latency", "size_bytes", unit,
                 [CurvePoint(float(s), [float(v), float(v) * 1.01]) for s, v in zip(sizes, values)])


@sim
def test_gpu_levels_from_synthetic_curves():
    from memprobe.result import Code
    from memprobe.scan.plan import sweep_sizes
    from memprobe.scan.gpu import gpu_levels

    sizes = sweep_sizes(4 * KiB, 256 << 20, 4, align=128)

    def ca(s):  # H100-like: L1 256 KiB at 38 cycles, L2 50 MiB at 380, HBM 700
        return 38.0 if s <= 200 * KiB else (380.0 if s <= 40 << 20 else 700.0)

    def cg(s):
        return 380.0 if s <= 40 << 20 else 700.0

    ghz = 1.75
    levels, bypass, _ = gpu_levels(
        _curve("latency_ca_cycles", "cycles", sizes, [ca(s) for s in sizes]),
        _curve("latency_ca_ns", "ns", sizes, [ca(s) / ghz for s in sizes]),
        _curve("latency_cg_cycles", "cycles", sizes, [cg(s) for s in sizes]),
        _curve("latency_cg_ns", "ns", sizes, [cg(s) / ghz for s in sizes]))
    assert [lv.name for lv in levels] == ["L1", "L2", "memory"]
    assert levels[0].latency_cycles == pytest.approx(38, rel=0.02)
    assert levels[0].latency_ns == pytest.approx(38 / ghz, rel=0.03)
    assert levels[1].size_bytes == pytest.approx(45 << 20, rel=0.2)
    assert levels[-1].size_bytes is None
    assert bypass[0].latency_cycles == pytest.approx(380, rel=0.02)
    assert levels[1].has_note(Code.L1_BYPASS_EDGE)


def test_near_far_split():
    from memprobe.scan.gpu import split_near_far

    rng = np.random.default_rng(1)
    c = np.concatenate([rng.normal(270, 5, 300), rng.normal(500, 10, 300)])
    r = split_near_far(c)
    assert r["split_seen"] and r["near_cycles"] == pytest.approx(270, rel=0.03)
    assert r["far_cycles"] == pytest.approx(500, rel=0.03) and r["near_fraction"] == pytest.approx(0.5, abs=0.02)
    flat = split_near_far(rng.normal(300, 3, 500))
    assert not flat["split_seen"]


@sim
def test_scan_gpu_with_fake_device():
    from memprobe.result import Code, ScanResult
    from memprobe.scan import ScanOptions, new_result, no_progress
    from memprobe.scan.gpu import GPU_STAGES, scan_gpu

    opts = ScanOptions(device="gpu", train=False)
    res = new_result(opts)
    assert scan_gpu(opts, no_progress, res, device=FakeDevice()) is True
    g = res.devices["gpu"]
    assert g.kind == "gpu" and g.name == "Fake H100 (simulator)"
    assert set(g.extra.stage_seconds) == {s.name for s in GPU_STAGES}
    assert res.settings.gpu_plan["profile"] == "sim" and res.settings.gpu_plan["latency_sizes"]
    names = {c.name for c in g.curves}
    for n in ("clock", "latency_ca_cycles", "latency_ca_ns", "latency_cg_cycles", "latency_cg_ns",
              "bandwidth_triad_threads_all", "bandwidth_read_threads_1", "transfer_h2d_pinned",
              "compute_fp32_fma", "shared_latency"):
        assert n in names
    assert len(g.curve("latency_ca_cycles").points) == len(g.curve("latency_ca_ns").points) >= 4
    assert g.levels and g.levels[-1].size_bytes is None
    mem = g.levels[-1]
    assert set(mem.bandwidth_gbs) == {"read", "write", "copy", "triad"}
    assert set(mem.bandwidth_gbs["copy"]) == {"threads_1", "threads_all"}
    assert all(g.bandwidth.verified.values()) and g.bandwidth.statistic == "best"
    assert g.extra.shared_memory.verified and g.extra.host_link.verified
    # one shape of compute ceilings for CPU and GPU: GFLOP/s by dtype and threads
    assert g.compute.verified and g.compute.fma["float32"]["threads_all"] > 0
    assert g.compute.theoretical.gflops["float32"] > 0
    parts = g.extra.l2_partitions
    assert [s.sm for s in parts.sms] == [0, 1] and len(parts.pairs) == 1
    assert set(g.extra.sharing) == {"L1", "L2"}
    assert any(w.code == Code.SIMULATOR for w in g.warnings)
    assert {c.kind for c in g.curves if c.name.startswith("transfer_")} == {"transfer"}
    assert ScanResult.from_json(res.to_json()) == res  # the gpu device round-trips


@pytest.mark.gpu
def test_real_gpu_quick_scan():
    """Real hardware only: a quick scan gives L1 < L2 < HBM latency and positive bandwidth."""
    from memprobe.platform.gpu import gpu_available

    if SIM_OK:
        pytest.skip("numba.cuda runs in the simulator here; run with MEMPROBE_REAL_GPU=1")
    ok, why = gpu_available()
    if not ok:
        pytest.skip(f"no GPU: {why}")
    from memprobe.scan import ScanOptions, new_result, no_progress
    from memprobe.scan.gpu import scan_gpu

    opts = ScanOptions(device="gpu", quick=True, train=False)
    res = new_result(opts)
    assert scan_gpu(opts, no_progress, res)
    g = res.devices["gpu"]
    lat = [lv.latency_cycles for lv in g.levels]
    assert len(lat) >= 3 and lat == sorted(lat)
    assert g.clock_ghz > 1.0 and g.clock_ghz < 3.0
    assert g.levels[-1].bandwidth_gbs["copy"]["threads_all"] > 500
