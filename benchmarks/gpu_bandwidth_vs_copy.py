"""Benchmark (beside the flow): are memprobe's GPU ceilings honest?

1. HBM copy bandwidth of our numba.cuda copy kernel vs a CuPy device-to-device copy of the
   same bytes in the same run (cudaMemcpy D2D, and CuPy's elementwise copy), both counted as
   STREAM counts a copy (bytes read + bytes written), plus the fraction of the declared
   theoretical HBM peak (memory clock x 2 x bus width). Target: ours >= 0.95 x CuPy's.
2. FP32 FMA GFLOP/s vs SMs x 128 x 2 x measured SM clock. Target: >= 0.90.

Without a usable GPU it prints one "no GPU: ..." line and exits 0.
Usage: python3 benchmarks/gpu_bandwidth_vs_copy.py [--size-mib 1024] [--reps 20] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="bytes per array (MiB)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)

    from memprobe.platform.gpu import declared_gpu, gpu_available

    ok, why = gpu_available()
    if not ok:
        print(f"no GPU: {why}")
        return 0

    import numpy as np
    from numba import cuda

    from memprobe.probes.gpu.bandwidth import BandwidthProbe, Launch, full_occupancy
    from memprobe.probes.gpu.clock import KernelTimer, clock_samples
    from memprobe.probes.gpu.compute import FmaProbe

    dev = cuda.get_current_device()
    d = declared_gpu(dev, memory_info=cuda.current_context().get_memory_info())
    sms, tps = d["sm_count"], d["max_threads_per_sm"] or 2048
    nbytes = a.size_mib << 20
    n = nbytes // 8
    out: dict = {"device": d["name"], "array_bytes": nbytes, "reps": a.reps,
                 "theoretical_memory_gbs": d["theoretical_memory_gbs"]}
    print(f"{d['name']}: {sms} SMs, declared HBM peak {d['theoretical_memory_gbs'] or float('nan'):.0f} GB/s, "
          f"copy of {a.size_mib} MiB (STREAM counting: 2 x bytes)")

    # ours: a few launch shapes, all reported; the best is the kernel's figure
    ours = {}
    for threads, mult in ((256, 1), (256, 2), (512, 1), (1024, 1)):
        launch = full_occupancy(sms, tps, threads)
        launch = Launch(launch.blocks * mult, launch.threads)
        p = BandwidthProbe()
        p.setup("copy", 2 * nbytes, launch)
        secs = p.run(1, a.reps)
        ours[f"{launch.blocks}x{launch.threads}"] = statistics.median(2 * p.n_elements * 8 / s / 1e9 for s in secs)
        del p
    best_cfg = max(ours, key=ours.get)
    out["ours_gbs_by_launch"] = ours
    out["ours_gbs"] = ours[best_cfg]

    refs = {}
    try:
        import cupy as cp

        src = cp.ones(n, dtype=cp.float64)
        dst = cp.empty_like(src)
        rt = cp.cuda.runtime

        def timed(fn) -> float:
            fn()
            cp.cuda.Device().synchronize()
            vals = []
            for _ in range(a.reps):
                e0, e1 = cp.cuda.Event(), cp.cuda.Event()
                e0.record()
                fn()
                e1.record()
                e1.synchronize()
                vals.append(2 * nbytes / (cp.cuda.get_elapsed_time(e0, e1) / 1e3) / 1e9)
            return statistics.median(vals)

        refs["cupy memcpy D2D"] = timed(lambda: rt.memcpyAsync(dst.data.ptr, src.data.ptr, nbytes,
                                                               rt.memcpyDeviceToDevice, 0))
        refs["cupy copyto (elementwise)"] = timed(lambda: cp.copyto(dst, src))
        del src, dst
    except ImportError:
        print("CuPy is not installed: no reference copy (pip install cupy-cuda12x)")
    out["reference_gbs"] = refs

    rows = [(f"memprobe copy kernel {cfg}", v) for cfg, v in ours.items()] + list(refs.items())
    peak = d["theoretical_memory_gbs"]
    for name, v in rows:
        frac = f"{v / peak:6.1%} of peak" if peak else ""
        print(f"  {name:40s} {v:9.1f} GB/s  {frac}")
    if refs:
        ref = max(refs.values())
        out["ours_over_reference"] = out["ours_gbs"] / ref
        verdict = "OK" if out["ours_over_reference"] >= 0.95 else "BELOW TARGET"
        print(f"  ours ({best_cfg}) / best CuPy copy = {out['ours_over_reference']:.3f}  (target >= 0.95: {verdict})")
    if peak:
        out["ours_fraction_of_peak"] = out["ours_gbs"] / peak

    # FP32 FMA vs SMs x 128 x 2 x measured clock
    cyc, ns = clock_samples(5, 5_000_000)
    idle_ghz = statistics.median(c / t for c, t in zip(cyc, ns) if t)
    fma = FmaProbe(sms * max(1, tps // 256), 256)
    fma.run(256, 1)
    iters = 256
    t = KernelTimer()
    while True:  # grow until one launch lasts >= 50 ms
        t.start()
        fma._launch(iters)
        if t.stop() >= 0.05 or iters >= 1 << 22:
            break
        iters *= 2
    secs = fma.run(iters, 5)
    gflops = statistics.median(fma.flops(iters) / s / 1e9 for s in secs)
    c_in, n_in = fma.clock()
    fma_ghz = float(np.median(c_in.astype(float) / np.maximum(n_in.astype(float), 1)))
    lanes = d.get("fp32_lanes_per_sm") or 128
    out["fma"] = {"gflops": gflops, "idle_clock_ghz": idle_ghz, "fma_clock_ghz": fma_ghz,
                  "lanes_per_sm": lanes, "verified": fma.verify(3)}
    for label, ghz in (("clock during the FMA kernel", fma_ghz), ("idle clock (spin)", idle_ghz)):
        pk = sms * lanes * 2 * ghz
        out["fma"][f"fraction_at_{'fma' if 'FMA' in label else 'idle'}_clock"] = gflops / pk
        print(f"  FP32 FMA {gflops / 1e3:8.2f} TFLOP/s = {gflops / pk:6.1%} of {sms} x {lanes} x 2 x "
              f"{ghz:.3f} GHz ({label}); target >= 90%")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
