"""Operands from memory priced two ways, against the same measured steps: the cold replay
(`predict.cold_s`, the default) and the bandwidth formula alone (`predict.excess_memory_s`,
what `predict --on` still uses). A paired run: each point's inputs are measured once (warm and
cold replays), both predictions are made from them, and the step is measured twice (the median
of the two medians), so the host's minute-to-minute swings fall on both models alike.

    python benchmarks/predict_cold_ab.py --scan DIR/scan.json [--zoo benchmarks/zoo_outside.py]
        [--models gpt2,mlp] [--batches 16] [--threads 1,all] [--optimizers adamw,sgd] [--out ab.json]

Prints one line per point and, per model, both models' median |error|.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import zoo_models  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scan", required=True, help="a scan.json of this machine")
    ap.add_argument("--zoo", default=str(Path(__file__).resolve().parent / "predict_zoo.py"),
                    help="a file defining MODELS and a function per model (default: predict_zoo.py)")
    ap.add_argument("--models", default=None, help="comma-separated (default: the zoo's MODELS)")
    ap.add_argument("--batches", default="16")
    ap.add_argument("--threads", default="1,all")
    ap.add_argument("--optimizers", default="adamw,sgd")
    ap.add_argument("--out", default=None, help="write every point as JSON here")
    a = ap.parse_args()

    from memprobe.result import ScanResult
    from memprobe.train import model as M
    from memprobe.train import predict as P
    from memprobe.train import spec as S
    from memprobe.train.inputs import measure_step_inputs

    zoo = Path(a.zoo).resolve()
    if a.models is None:
        a.models = ",".join(zoo_models(zoo))
    device = ScanResult.load(a.scan).devices["cpu"]
    rows = []
    for model in a.models.split(","):
        for opt in a.optimizers.split(","):
            for thr in a.threads.split(","):
                for batch in (int(b) for b in a.batches.split(",")):
                    tkey, n = S.resolve_threads(thr if thr == "all" else 1)
                    ceilings = M.ceilings_from_device(device, tkey, n, {})
                    builder = S.load_spec(f"{zoo}:{model}")
                    graph = S.capture_spec(builder, batch, opt)
                    with S.torch_threads(n):
                        inputs = measure_step_inputs(graph, n, opt, None)
                        cold = P.predict(graph, ceilings, inputs).predicted_s
                        warm_only = dataclasses.replace(inputs, rates={
                            k: dataclasses.replace(r, cold_call_s=None) for k, r in inputs.rates.items()})
                        formula = P.predict(graph, ceilings, warm_only).predicted_s
                        net, x, loss_fn = builder(batch)
                        measured = [P.measure_step(net, x, loss_fn, opt, 5) for _ in range(2)]
                    m = statistics.median(measured)
                    row = {"model": model, "optimizer": opt, "threads": thr, "batch": batch,
                           "measured_s": measured, "cold_s": cold, "formula_s": formula,
                           "error_cold": (cold - m) / m, "error_formula": (formula - m) / m}
                    rows.append(row)
                    print(f"{model:9s} {opt:5s} {thr:>3s} {batch:3d}  measured {1e3 * measured[0]:9.2f} "
                          f"{1e3 * measured[1]:9.2f} ms  cold {100 * row['error_cold']:+6.1f} %  "
                          f"formula {100 * row['error_formula']:+6.1f} %", flush=True)
    print("\nper model, median |error|: cold replay / formula")
    for model in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == model]
        c = statistics.median(abs(r["error_cold"]) for r in sel)
        f = statistics.median(abs(r["error_formula"]) for r in sel)
        print(f"  {model:9s} {100 * c:5.1f} % / {100 * f:5.1f} %  ({len(sel)} points)")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
