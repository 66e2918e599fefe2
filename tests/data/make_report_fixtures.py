"""Builds the renderer's test fixtures (stage 5 tests) from one real quick CPU scan.

    python3 tests/data/make_report_fixtures.py REAL_QUICK_SCAN.json

The latency, line and clock curves, the inferred levels and the declared caches are the real
scan's (trimmed: the CPU flag list is cut). Bandwidth curves and per-level bandwidth, compute
ceilings, loaded latency and the training study are *synthetic*, in the shapes the other stages
document, so that every section of the report renders; `settings["fixture"]` says so in each file.
Deterministic (fixed seed), so re-running gives the same files for the same input.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELS = ("read", "write", "copy", "triad")


def _logistic_steps(size: float, steps: list[tuple[float, float]], floor: float) -> float:
    """A value that falls from level to level around each capacity (smooth in log size)."""
    v = floor
    for cap, val in reversed(steps):
        w = 1.0 / (1.0 + math.exp(4.0 * (math.log2(size) - math.log2(cap))))
        v = val * w + v * (1 - w)
    return v


def bandwidth_curves(rng: random.Random, sizes: list[float], caps: list[float]) -> list[dict]:
    base = {"read": 1.0, "write": 0.55, "copy": 0.75, "triad": 0.8}
    out = []
    for k in KERNELS:
        for tk, mult in (("threads_1", 1.0), ("threads_all", 1.8)):
            steps = [(caps[0], 95.0 * base[k] * mult), (caps[1], 48.0 * base[k] * mult),
                     (caps[2], 30.0 * base[k] * (1.3 if mult > 1 else 1.0))]
            floor = 11.0 * base[k] * (1.35 if mult > 1 else 1.0)
            pts = []
            for s in sizes:
                v = _logistic_steps(s, steps, floor)
                pts.append({"x": s, "samples": [round(v * rng.uniform(0.9, 1.03), 3) for _ in range(3)]})
            out.append({"name": f"bandwidth_{k}_{tk}", "kind": "bandwidth", "x_name": "size_bytes",
                        "unit": "GB/s", "points": pts,
                        "params": {"kernel": k, "threads": tk, "synthetic": True}})
    return out


def level_bandwidth(idx: int) -> dict:
    table = [95.0, 48.0, 30.0, 22.0, 11.0]
    base = {"read": 1.0, "write": 0.55, "copy": 0.75, "triad": 0.8}
    v = table[min(idx, 4)]
    return {k: {"threads_1": round(v * b, 2), "threads_all": round(v * b * (1.8 if idx < 2 else 1.35), 2)}
            for k, b in base.items()}


def training_points(rng: random.Random, device: str, levels: list[dict], gflops: float,
                    bw: list[float], overhead_s: float) -> list[dict]:
    pts = []
    for li, lv in enumerate(levels):
        cap = lv["size_bytes"] or (levels[li - 1]["size_bytes"] or 2**28) * 8
        for frac in (0.5, 2.0):
            ws = int(cap * frac)
            width = max(8, int(math.sqrt(ws / 4 / 3 / 4)))
            for batch in (1, 16, 256):
                for threads in (("threads_1", "threads_all") if device == "cpu" else ("threads_all",)):
                    # all threads: below the all-thread ceilings the fixture declares
                    mult = (1.9 if device == "cpu" else 1.0) if threads == "threads_all" else 1.0
                    bw_mult = (1.3 if device == "cpu" else 1.0) if threads == "threads_all" else 1.0
                    flops = 6.0 * 4 * width * width * batch
                    nbytes = 3.0 * 4 * 4 * width * width + 4 * 4 * width * batch * 4
                    t_c = flops / (gflops * mult * 1e9)
                    t_m = nbytes / (bw[min(li, len(bw) - 1)] * bw_mult * 1e9)
                    pred = max(t_c, t_m) + 12 * overhead_s
                    meas = pred * rng.uniform(0.92, 1.3)
                    bound = "overhead" if 12 * overhead_s > max(t_c, t_m) else ("compute" if t_c > t_m else "memory")
                    pts.append({"device": device, "level": lv["name"], "width": width, "batch": batch,
                                "threads": threads, "working_set_bytes": ws, "flops": flops,
                                "bytes": nbytes, "measured_s": meas, "predicted_s": pred,
                                "error": (pred - meas) / meas,
                                "achieved_fraction": round(min(1.0, max(t_c, t_m) / meas), 3),
                                "bound": bound})
    return pts


def small(real: dict) -> dict:
    rng = random.Random(7)
    d = copy.deepcopy(real)
    cpu = d["cpu"]
    cpu["declared"]["flags"] = cpu["declared"].get("flags", [])[:12]
    d["settings"]["fixture"] = ("real quick CPU scan (latency, line size, clock, levels, declared "
                                "caches); bandwidth, compute, loaded latency and training are "
                                "synthetic for renderer tests, not measurements")
    lat = next(c for c in cpu["curves"] if c["kind"] == "latency")
    sizes = [p["x"] for p in lat["points"]]
    caps = [c["size_bytes"] for c in cpu["declared"]["data_caches"]][:3]
    cpu["curves"] += bandwidth_curves(rng, sizes, caps)
    for i, lv in enumerate(cpu["levels"]):
        lv["bandwidth_gbs"] = level_bandwidth(i if lv["size_bytes"] else 4)
    cpu["levels"][0]["sharing"] = "private"
    cpu["levels"][-2]["sharing"] = "shared" if len(cpu["levels"]) > 1 else None
    cpu["compute"] = {
        "fma": {"float32": {"threads_1": 41.2, "threads_all": 80.9},
                "float64": {"threads_1": 20.7, "threads_all": 40.1}},
        "gemm": [{"library": "OpenBLAS", "dtype": "float32", "n": n, "threads": 2, "gflops": g}
                 for n, g in ((256, 52.0), (1024, 68.5))]
                + [{"library": "OpenBLAS", "dtype": "float64", "n": 1024, "threads": 2, "gflops": 33.1}],
        "theoretical": {"peak_gflops_fp32": 2 * 2 * 16 * (cpu.get("clock_ghz") or 2.5),
                        "peak_gflops_fp64": 2 * 2 * 8 * (cpu.get("clock_ghz") or 2.5),
                        "fma_flops_per_cycle_fp32": 32, "isa": "avx2+fma"},
    }
    cpu["loaded_latency"] = [
        {"streaming_threads": n, "kernel": k, "bandwidth_gbs": bw, "latency_ns": lat_ns}
        for k, rows in (("read", ((0, 0.0, 110.0), (1, 9.5, 128.0))),
                        ("triad", ((0, 0.0, 110.0), (1, 10.8, 141.0))))
        for n, bw, lat_ns in rows]
    levels = cpu["levels"]
    d["training"] = {
        "points": training_points(rng, "cpu", levels, 38.0,
                                  [level_bandwidth(i)["read"]["threads_1"] for i in range(4)], 2e-6),
        "mnist": {"device": "cpu", "epoch_s": 41.7, "samples": 60000, "inputs": 784, "classes": 10,
                  "claim": "an MNIST epoch 40 s on 8 CPU cores vs 2 s on an RTX 4090"},
        "model": {"median_abs_error_batch16plus": 0.11, "baselines": {"plain_max": 0.31, "plain_sum": 0.22}},
    }
    return d


def incomplete(real: dict) -> dict:
    """A scan cut off during the latency stage: clock and line measured, no levels yet."""
    d = copy.deepcopy(real)
    cpu = d["cpu"]
    cpu["declared"]["flags"] = cpu["declared"].get("flags", [])[:12]
    d["complete"] = False
    d["settings"]["fixture"] = "real quick CPU scan cut short (latency curve truncated) for renderer tests"
    keep = []
    for c in cpu["curves"]:
        if c["name"] == "latency_hugepage":
            c["points"] = c["points"][:9]
            keep.append(c)
        elif c["kind"] != "latency":
            keep.append(c)
    cpu["curves"] = keep
    cpu["levels"] = []
    cpu["line_size_bytes"] = cpu.get("line_size_bytes")
    cpu["warnings"] = list(cpu.get("warnings", [])) + ["interrupted during stage 'latency'"]
    d["warnings"] = ["scan interrupted (Ctrl-C): the result holds what was measured so far"]
    d["training"] = {"points": []}
    return d


def gpu(small_scan: dict) -> dict:
    """The small scan plus a synthetic H100-shaped GPU device (cycles, CUDA attributes)."""
    rng = random.Random(11)
    d = copy.deepcopy(small_scan)
    d["settings"]["device"] = "all"
    d["settings"]["fixture"] = "synthetic GPU section for renderer tests, not a measurement"
    clock = 1.755
    sizes = [2.0 ** (k / 4) for k in range(4 * 12, 4 * 28 + 1)]  # 4K .. 256M, 4 per octave

    def chase(size: float, bypass: bool) -> float:
        # L2 ~290 cycles up to ~50 MB, HBM ~690 beyond; through L1, ~38 cycles up to ~240 KiB
        v = 290.0 + (690.0 - 290.0) / (1 + math.exp(-5 * (math.log2(size) - math.log2(50e6))))
        if not bypass:
            v = 38.0 + (v - 38.0) / (1 + math.exp(-5 * (math.log2(size) - math.log2(240 * 1024))))
        return v

    curves = []
    for name, bypass, label in (("latency_l1", False, "default loads (through L1)"),
                                ("latency_l2_bypass", True, "ld.global.cg (L1 bypassed)")):
        curves.append({"name": name, "kind": "latency", "x_name": "size_bytes", "unit": "cycles",
                       "params": {"label": label, "synthetic": True},
                       "points": [{"x": s, "samples": [round(chase(s, bypass) * rng.uniform(0.99, 1.04), 1)
                                                       for _ in range(3)]} for s in sizes]})
    for k, f in (("read", 1.0), ("write", 0.9), ("copy", 0.95), ("triad", 0.95)):
        pts = []
        for s in sizes:
            v = _logistic_steps(s, [(240 * 1024, 9000.0 * f), (50e6, 5500.0 * f)], 3000.0 * f)
            pts.append({"x": s, "samples": [round(v * rng.uniform(0.95, 1.02), 1) for _ in range(3)]})
        curves.append({"name": f"bandwidth_{k}_threads_all", "kind": "bandwidth", "x_name": "size_bytes",
                       "unit": "GB/s", "points": pts, "params": {"kernel": k, "threads": "threads_all"}})

    def lv(name, size, cyc, bw, spread=0.03, sharing=None):
        return {"name": name, "size_bytes": size, "latency_ns": cyc / clock, "latency_cycles": cyc,
                "bandwidth_gbs": {k: {"threads_1": None, "threads_all": round(bw * f, 1)}
                                  for k, f in (("read", 1.0), ("write", 0.9), ("copy", 0.95), ("triad", 0.95))},
                "latency_spread": spread, "unstable": False,
                "size_range_bytes": [int(size * 0.84), int(size * 1.19)] if size else None,
                "sharing": sharing, "notes": []}

    d["gpu"] = {
        "kind": "gpu", "name": "NVIDIA H100 80GB HBM3 (synthetic)",
        "levels": [lv("L1", 229376, 38.0, 9000.0, sharing="private"),
                   lv("L2", 41943040, 290.0, 5500.0, sharing="shared"),
                   lv("memory", None, 690.0, 3000.0)],
        "line_size_bytes": 128, "clock_ghz": clock,
        "declared": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "sm_count": 132,
                     "l2_size_bytes": 52428800, "shared_mem_per_block_optin_bytes": 232448,
                     "shared_mem_per_sm_bytes": 233472, "max_clock_ghz": 1.98,
                     "memory_clock_ghz": 2.619, "memory_bus_width_bits": 5120,
                     "theoretical_memory_bandwidth_gbs": 3352.0},
        "curves": curves,
        "compute": {"fma": {"float32": {"threads_all": 58900.0}},
                    "gemm": [{"library": "cupy", "dtype": "bfloat16", "n": 8192, "threads": None, "gflops": 690000.0},
                             {"library": "cupy", "dtype": "tf32", "n": 8192, "threads": None, "gflops": 370000.0}],
                    "theoretical": {"peak_gflops_fp32": 132 * 128 * 2 * clock}},
        "loaded_latency": [],
        "warnings": ["L2 near/far halves differ by 1.8x: the L2 latency above is the near half"],
        "extra": {"l2_near_far": {"near_cycles": 272.0, "far_cycles": 498.0, "sm_probed": [0, 66, 131]},
                  "host_link": [{"direction": "h2d", "memory": "pinned", "size_bytes": 268435456, "bandwidth_gbs": 52.1},
                                {"direction": "h2d", "memory": "pageable", "size_bytes": 268435456, "bandwidth_gbs": 19.8}]},
    }
    gl = d["gpu"]["levels"]
    d["training"]["points"] += training_points(rng, "gpu", gl, 50000.0, [9000.0, 5500.0, 3000.0], 6e-6)
    d["training"]["speedup"] = [{"width": w, "gpu_over_cpu": s} for w, s in ((64, 0.4), (256, 2.1), (1024, 35.0), (4096, 210.0))]
    return d


def main(argv: list[str]) -> None:
    real = json.loads(Path(argv[1]).read_text())
    s = small(real)
    for name, doc in (("scan_small.json", s), ("scan_incomplete.json", incomplete(real)), ("scan_gpu.json", gpu(s))):
        (HERE / name).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv)
