#!/usr/bin/env bash
# One command for the GPU machine: the real GPU scan, the bandwidth/FMA benchmark and the
# real-GPU tests, everything written under OUTDIR.
#   usage: bash benchmarks/gpu_smoke.sh OUTDIR [--quick]
# Needs: pip install -e '.[gpu,test]' (numba-cuda, cupy-cuda12x; torch optional for GEMMs).
set -u
OUT=${1:?usage: bash benchmarks/gpu_smoke.sh OUTDIR [--quick]}
QUICK=${2:-}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
unset NUMBA_ENABLE_CUDASIM
(nvidia-smi -q > "$OUT/nvidia-smi.txt" 2>&1 || true)
python3 -c "import numba, numba.cuda; print('numba', numba.__version__, numba.cuda.__file__)" > "$OUT/versions.txt" 2>&1

echo "== GPU scan (scan_gpu directly; writes $OUT/gpu_scan/) =="
python3 - "$OUT/gpu_scan" "$QUICK" <<'PY' 2>&1 | tee "$OUT/gpu_scan.log"
import sys, time, pathlib
from memprobe.scan import ScanOptions, new_result
from memprobe.scan.gpu import scan_gpu
out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
opts = ScanOptions(device="gpu", quick=sys.argv[2] == "--quick", train=False)
res = new_result(opts)
def progress(stage, done, total, msg=""):
    print(f"[{time.strftime('%H:%M:%S')}] {stage} {done}/{total} {msg}", file=sys.stderr, flush=True)
t0 = time.perf_counter()
try:
    ok = scan_gpu(opts, progress, res)
finally:
    res.duration_s = round(time.perf_counter() - t0, 2)
    res.complete = "gpu" in res.devices and not any("failed" in w for w in res.devices["gpu"].warnings)
    res.save(out / "scan.json")
    (out / "curves.csv").write_text(res.curves_csv())
print("warnings:", res.warnings)
g = res.devices.get("gpu")
if g:
    print(f"device {g.name}  measured clock {g.clock_ghz} GHz  scan {res.duration_s} s (target <= 60 s)")
    print("stage seconds:", g.extra.get("stage_seconds"))
    print("declared: L2", g.declared.get("l2_bytes"), "B; L1 max", g.declared.get("l1_max_bytes"), "B;",
          "HBM peak", g.declared.get("theoretical_memory_gbs"), "GB/s")
    for lv in g.levels:
        bw = {k: v.get("threads_all") for k, v in lv.bandwidth_gbs.items()}
        print(f"  {lv.name:7s} size {lv.size_bytes}  {lv.latency_cycles} cyc  {lv.latency_ns} ns  "
              f"sharing {lv.sharing}  bw {bw}  {lv.notes}")
    print("bypass levels:", g.extra.get("l1_bypass_levels"))
    print("l2 partitions:", g.extra.get("l2_partitions", {}).get("sms"), g.extra.get("l2_partitions", {}).get("pairs"))
    print("sharing:", {k: (v.get("ratio_together_over_alone"), v.get("sharing")) for k, v in g.extra.get("sharing", {}).items()})
    print("shared memory:", g.extra.get("shared_memory"))
    print("compute:", g.compute)
    print("transfers:", g.extra.get("transfers"))
    print("device warnings:", g.warnings)
PY

echo "== benchmark: copy vs CuPy, FMA vs peak =="
python3 benchmarks/gpu_bandwidth_vs_copy.py --json "$OUT/gpu_bandwidth_vs_copy.json" 2>&1 | tee "$OUT/gpu_bandwidth_vs_copy.txt"

echo "== real-GPU tests =="
MEMPROBE_REAL_GPU=1 python3 -m pytest -q -m gpu tests/test_gpu_sim.py 2>&1 | tee "$OUT/pytest_gpu.txt"

echo "== simulator tests (logic, same checkout) =="
python3 -m pytest -q tests/test_gpu_sim.py 2>&1 | tail -5 | tee "$OUT/pytest_sim.txt"

if python3 -c "import memprobe.cli" 2>/dev/null; then
  echo "== CLI scan (--device gpu: CPU + GPU) =="
  timeout 900 python3 -m memprobe scan --device gpu ${QUICK} --out "$OUT/cli_scan" 2>&1 | tail -20 | tee "$OUT/cli_scan.log"
fi
echo "all outputs in $OUT"
