"""`memprobe predict` against real steps on a zoo of networks: Hugging Face models built from
configs with random weights (nothing downloaded) and a plain MLP, each step captured, its ops'
rates measured here, predicted from a scan, and timed for real (memprobe/train/spec.py).

    python benchmarks/predict_zoo.py --scan DIR/scan.json [--small] [--out zoo.json]

Models: GPT-2 (4 layers, width 256, sequence 128), BERT (4 layers, width 256, sequence 128,
masked-LM loss), ViT (64 px, patch 8, 4 layers, width 256), ResNet (bottleneck, depths
[2, 2, 2, 2], 64 px), an MLP (784-1024-1024-10). Batches 1, 16, 64; threads 1 and all; AdamW
and SGD (`--small`: batches 1 and 16, one thread, AdamW). Per point: the measured step (median),
the prediction, and two baselines: the step's FLOPs at the scan's measured peak, and the sum of
every captured op replayed alone at its shape. Per model: median |error| at batch >= 16
(target 10 %), the signed median (target within 5 %), batch 1's (target 20 %), the least
coverage (target 99 %).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import zoo_models  # noqa: E402

SEQ = 128


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging

        logging.set_verbosity_error()
    except Exception:
        pass


def gpt2(batch: int = 16):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    _quiet_transformers()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=256, n_head=4, n_positions=SEQ))
    ids = torch.randint(0, model.config.vocab_size, (batch, SEQ))
    return model, {"input_ids": ids, "labels": ids}


def bert(batch: int = 16):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    _quiet_transformers()
    torch.manual_seed(0)
    cfg = BertConfig(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024,
                     max_position_embeddings=SEQ)
    model = BertForMaskedLM(cfg)
    ids = torch.randint(0, cfg.vocab_size, (batch, SEQ))
    return model, {"input_ids": ids, "labels": ids}


def vit(batch: int = 16):
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    _quiet_transformers()
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=64, patch_size=8, num_hidden_layers=4, hidden_size=256, num_attention_heads=4,
                    intermediate_size=1024, num_labels=10)
    model = ViTForImageClassification(cfg)
    return model, {"pixel_values": torch.randn(batch, 3, 64, 64), "labels": torch.randint(0, 10, (batch,))}


def resnet(batch: int = 16):
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    _quiet_transformers()
    torch.manual_seed(0)
    model = ResNetForImageClassification(ResNetConfig(depths=[2, 2, 2, 2], num_labels=10))
    return model, {"pixel_values": torch.randn(batch, 3, 64, 64), "labels": torch.randint(0, 10, (batch,))}


def mlp(batch: int = 16):
    import torch
    from torch.nn import functional as F

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    x, y = torch.randn(batch, 784), torch.randint(0, 10, (batch,))
    return model, x, (lambda out: F.cross_entropy(out, y))


MODELS = ("gpt2", "bert", "vit", "resnet", "mlp")


def _pct(x: float | None, sign: bool = True) -> str:
    return "   -   " if x is None else (f"{100 * x:+6.1f}%" if sign else f"{100 * x:6.1f}%")


def _ms(x: float | None) -> str:
    return "     -" if x is None else f"{1e3 * x:8.2f}"


def summarize(points: list[dict], key: str = "predicted_s") -> dict[str, dict]:
    out = {}
    for m in dict.fromkeys(p["zoo_model"] for p in points):
        def errs(sel):
            return [(p[key] - p["measured_s"]) / p["measured_s"] for p in points
                    if p["zoo_model"] == m and sel(p) and p.get(key) and p.get("measured_s")]
        big, one = errs(lambda p: p["batch"] >= 16), errs(lambda p: p["batch"] == 1)
        out[m] = {"median_abs_ge16": statistics.median(abs(e) for e in big) if big else None,
                  "median_signed_ge16": statistics.median(big) if big else None,
                  "median_abs_b1": statistics.median(abs(e) for e in one) if one else None,
                  "min_coverage": min(p["coverage"] for p in points if p["zoo_model"] == m)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scan", required=True, help="a scan.json of this machine")
    ap.add_argument("--small", action="store_true", help="batches 1 and 16, one thread, AdamW")
    ap.add_argument("--zoo", default=None, help="a file defining MODELS and a function per model (default: this "
                    "file's zoo; benchmarks/zoo_outside.py holds networks outside it)")
    ap.add_argument("--models", default=None, help="comma-separated (default: the zoo's MODELS)")
    ap.add_argument("--jsonl", default=None, help="also append each measured point as a validation record "
                    "(memprobe predict --measure --jsonl's form) to this file")
    ap.add_argument("--batches", default=None, help="comma-separated (default 1,16,64; --small 1,16)")
    ap.add_argument("--threads", default=None, help="comma-separated of 1, all (default both; --small 1)")
    ap.add_argument("--optimizers", default=None, help="comma-separated of adamw, sgd (default both; --small adamw)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default=None, help="write every point as JSON here")
    ap.add_argument("--wait-quiet", type=float, default=0.0,
                    help="before each point wait up to this many seconds for the other processes to go quiet")
    ap.add_argument("--fresh", action="store_true",
                    help="measure every op's rate now (not from the per-machine cache): rates and steps "
                         "sampled in the same minutes on a shared machine")
    a = ap.parse_args()

    from memprobe.platform.load import OthersMeter, wait_quiet
    from memprobe.result import ScanResult
    from memprobe.train import spec as S

    scan = ScanResult.load(a.scan)
    batches = [int(b) for b in (a.batches or ("1,16" if a.small else "1,16,64")).split(",")]
    threads = (a.threads or ("1" if a.small else "1,all")).split(",")
    opts = (a.optimizers or ("adamw" if a.small else "adamw,sgd")).split(",")
    here = Path(a.zoo).resolve() if a.zoo else Path(__file__).resolve()
    if a.models is None:
        a.models = ",".join(zoo_models(here))
    from memprobe.train.on_scan import append_record
    points = []
    print(f"{'model':7s} {'B':>3s} {'thr':>4s} {'opt':5s} {'measured':>9s} {'predicted':>9s} {'err':>8s} "
          f"{'peak':>8s} {'err':>8s} {'replay':>8s} {'err':>8s} {'cover':>6s} {'ops':>5s} {'s':>5s} {'others':>6s}"
          "  (ms; others: CPUs the machine's other processes used meanwhile)")
    for model in a.models.split(","):
        for opt in opts:
            for thr in threads:
                for b in batches:
                    if a.wait_quiet > 0:
                        wait_quiet(a.wait_quiet)
                    t0 = time.perf_counter()
                    meter = OthersMeter().start()
                    try:
                        r = S.run_predict(f"{here}:{model}", scan, batch=b, threads=thr if thr == "all" else 1,
                                          optimizer=opt, measure=True, steps=a.steps,
                                          use_cache=not a.fresh)
                    except S.SpecError as exc:
                        print(f"{model:7s} {b:3d} {thr:>4s} {opt:5s} error (exit {exc.exit_code}): {exc}")
                        continue
                    if a.jsonl and r.measured_s:
                        append_record(a.jsonl, r, spec=f"{os.path.relpath(here)}:{model}")
                    d = r.to_dict()
                    d["wall_s"] = time.perf_counter() - t0
                    d["zoo_model"] = model
                    d["others_cpus"] = meter.share()
                    points.append(d)
                    m = r.measured_s

                    def err(x):
                        return None if x is None or not m else (x - m) / m
                    print(f"{model:7s} {b:3d} {thr:>4s} {opt:5s} {_ms(m):>9s} {_ms(r.predicted_s):>9s} "
                          f"{_pct(r.error):>8s} {_ms(r.flops_peak_s):>8s} {_pct(err(r.flops_peak_s)):>8s} "
                          f"{_ms(r.replay_sum_s):>8s} {_pct(err(r.replay_sum_s)):>8s} {100 * r.coverage:5.1f}% "
                          f"{r.distinct_ops:5d} {d['wall_s']:5.0f} {d['others_cpus'] or 0:6.2f}", flush=True)
    print()
    print("per model: median |error| at batch >= 16 (target 10 %), signed (5 %), batch 1 (20 %), coverage (99 %)")
    for label, key in (("prediction", "predicted_s"), ("flops/peak", "flops_peak_s"), ("replay sum", "replay_sum_s")):
        print(f"  {label}:")
        for m, s in summarize(points, key).items():
            print(f"    {m:7s} |err| B>=16 {_pct(s['median_abs_ge16'], False)}  "
                  f"signed {_pct(s['median_signed_ge16'])}  "
                  f"|err| B=1 {_pct(s['median_abs_b1'], False)}  coverage {100 * s['min_coverage']:.1f}%")
    if a.out:
        Path(a.out).write_text(json.dumps(points, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
