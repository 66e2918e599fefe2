#!/usr/bin/env bash
# The GPU machine's work in one command: the real GPU scan, the bandwidth/FMA benchmark, the
# real-GPU tests, the CLI scan (CPU + GPU + training study, HTML report), the GPU training
# prediction scored on that scan, and the CNN and transformer families with the seed table's
# GPU half (PyTorch on CUDA). Everything lands under OUTDIR and, packed, in OUTDIR.tgz.
#
#   usage: bash benchmarks/gpu_smoke.sh OUTDIR [--quick] [--only STEP[,STEP...]]
#   steps: scan bench tests cli train families (default: all, in that order)
#
# Needs numba-cuda (and cupy or torch for the reference copy and the GEMMs) on top of memprobe.
# On a machine with no package index (this workplace's device tool), where those are already
# installed, and keeping each call inside its 10 minutes and 8 returned files:
#   python3 -m pip install -q --no-deps --no-build-isolation -e . &&
#   bash benchmarks/gpu_smoke.sh /tmp/smoke --only scan,bench,tests && cp /tmp/smoke.tgz $OUT/a.tgz
#   ... then --only cli,train into b.tgz and --only families into c.tgz. Each step has its own time limit (STEP_LIMIT_S below), so a
# hung step costs its limit, not the call; at the limit it gets SIGINT (Ctrl-C), on which the scans
# still write what they measured. The exit status is the worst step's.
set -u
usage="usage: bash benchmarks/gpu_smoke.sh OUTDIR [--quick] [--only STEP[,STEP...]]"
OUT=${1:?$usage}
shift
QUICK=""
ONLY="scan,bench,tests,cli,train,families"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK="--quick" ;;
    --only) ONLY=${2:?$usage}; ONLY=${ONLY// /}; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
# cli + train stay under 500 s together: the device tool's calls end at 600 s, install included
declare -A STEP_LIMIT_S=([scan]=180 [bench]=150 [tests]=150 [cli]=300 [train]=180 [families]=400)
for s in ${ONLY//,/ }; do
  [ -n "${STEP_LIMIT_S[$s]:-}" ] || { echo "unknown step '$s' ($usage)" >&2; exit 2; }
done
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) || { echo "cannot create the output folder" >&2; exit 2; }
cd "$(dirname "$0")/.."
unset NUMBA_ENABLE_CUDASIM
timeout 60 nvidia-smi -q > "$OUT/nvidia-smi.txt" 2>&1
timeout 60 python3 -c "import numba, numba.cuda; print('numba', numba.__version__, numba.cuda.__file__)" \
  > "$OUT/versions.txt" 2>&1
WORST_RC=0
step() {  # step NAME LOGFILE COMMAND...: run under the step's limit, log to OUT/LOGFILE
  local name=$1 log=$2; shift 2
  echo "== $name (limit ${STEP_LIMIT_S[$name]} s) =="
  local t0=$SECONDS
  timeout -s INT -k 30 "${STEP_LIMIT_S[$name]}" "$@" > "$OUT/$log" 2>&1
  local rc=$?
  [ "$rc" -gt "$WORST_RC" ] && WORST_RC=$rc
  tail -40 "$OUT/$log"
  echo "== $name: rc $rc, $((SECONDS - t0)) s ==" | tee -a "$OUT/steps.txt"
}

if wants scan; then
  step scan gpu_scan.log python3 - "$OUT/gpu_scan" "$QUICK" <<'PY'
import sys, time, pathlib
from memprobe.scan import ScanOptions, new_result
from memprobe.scan.gpu import scan_gpu
from memprobe.result import Code
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
    res.complete = "gpu" in res.devices and not any(w.code == Code.STAGE_FAILED for w in res.devices["gpu"].warnings)
    res.save(out / "scan.json")
    (out / "curves.csv").write_text(res.curves_csv())
print("warnings:", [w.text for w in res.warnings])
g = res.devices.get("gpu")
if g:
    print(f"device {g.name}  measured clock {g.clock_ghz} GHz  scan {res.duration_s} s (target <= 60 s)")
    print("stage seconds:", g.extra.stage_seconds)
    print("declared caches:", [(c.label, c.size_bytes, c.scope) for c in g.declared.caches],
          "HBM peak", g.declared.gpu.theoretical_memory_gbs, "GB/s")
    for lv in g.levels:
        bw = {k: v.get("threads_all") for k, v in lv.bandwidth_gbs.items()}
        print(f"  {lv.name:7s} size {lv.size_bytes}  {lv.latency_cycles} cyc  {lv.latency_ns} ns  "
              f"sharing {lv.sharing}  bw {bw}  {[n.text for n in lv.notes]}")
    print("bypass levels:", g.extra.l1_bypass_levels)
    print("l2 partitions:", g.extra.l2_partitions)
    print("sharing:", {k: (v.ratio, v.verdict) for k, v in g.extra.sharing.items()})
    print("shared memory:", g.extra.shared_memory)
    print("compute:", g.compute)
    print("host link:", g.extra.host_link)
    print("device warnings:", [w.text for w in g.warnings])
PY
fi

if wants bench; then
  step bench gpu_bandwidth_vs_copy.txt \
    python3 benchmarks/gpu_bandwidth_vs_copy.py --json "$OUT/gpu_bandwidth_vs_copy.json"
fi

if wants tests; then
  step tests pytest_gpu.txt env MEMPROBE_REAL_GPU=1 python3 -m pytest -q -m gpu tests/test_gpu_sim.py
fi

if wants cli; then
  # CPU + GPU + the training study, with the HTML report: the example report's source
  step cli cli_scan.log python3 -m memprobe scan --device gpu ${QUICK} --no-progress --out "$OUT/cli_scan"
fi

if wants train; then
  # the GPU sweep's prediction error (target: <= 20 %) on the ceilings the CLI scan measured
  scan_json="$OUT/cli_scan/scan.json"
  [ -f "$scan_json" ] || scan_json="$OUT/gpu_scan/scan.json"
  if [ -f "$scan_json" ]; then
    step train train_prediction_gpu.txt \
      python3 benchmarks/train_prediction.py --device gpu --scan "$scan_json" ${QUICK}
  else
    echo "== train: skipped, no scan.json from the cli or scan step ==" | tee -a "$OUT/steps.txt"
  fi
fi

if wants families; then
  # the CNN and transformer sweeps on the GPU and the seed table's both halves (ResNet-50 and
  # GPT-2 small checks on CPU and GPU), on the CLI scan's ceilings: report and JSON land in
  # OUTDIR/families (needs a CUDA build of PyTorch)
  scan_json="$OUT/cli_scan/scan.json"
  if [ -f "$scan_json" ]; then
    step families families.log python3 -m memprobe train --device gpu --model cnn,transformer --seed-table \
      --scan "$scan_json" --out "$OUT/families"
  else
    echo "== families: skipped, no scan.json from the cli step ==" | tee -a "$OUT/steps.txt"
  fi
fi

tar czf "$OUT.tgz" -C "$(dirname "$OUT")" "$(basename "$OUT")"
echo "all outputs in $OUT and $OUT.tgz (worst step exit status: $WORST_RC)"
exit "$WORST_RC"
