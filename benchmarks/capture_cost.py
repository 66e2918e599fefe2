"""How long capturing one training step of GPT-2 small (12 layers, sequence 1024, AdamW) takes
under fake tensors (memprobe/train/capture.py): nothing is allocated, so this is the
dispatcher's and the recorder's cost alone. Target: 10 s.

    python benchmarks/capture_cost.py [--batch 1] [--seq 1024] [--optimizer adamw]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--optimizer", default="adamw", choices=("sgd", "adamw"))
    a = ap.parse_args()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from memprobe.train import capture as C

    def build():
        model = GPT2LMHeadModel(GPT2Config())
        ids = torch.randint(0, 50257, (a.batch, a.seq))
        return model, {"input_ids": ids, "labels": ids}

    t0 = time.perf_counter()
    g = C.capture_step(build, optimizer=a.optimizer, name="gpt2-small", batch=a.batch)
    wall = time.perf_counter() - t0
    s = C.summary(g)
    params = sum(st.nbytes for st in g.storages.values() if st.role == "param")
    print(f"GPT-2 small, batch {a.batch}, seq {a.seq}, {a.optimizer}: captured in {wall:.2f} s "
          f"({'within' if wall <= 10 else 'OVER'} the 10 s target)")
    print(f"  {s['ops']} ops, {s['kernels']} kernels, {g.flops / 1e12:.3f} TFLOP, "
          f"parameters {params / 2**20:.0f} MiB, {len(g.storages)} storages")
    print(f"  unmodelled: {s['unmodelled'] or 'none'}")


if __name__ == "__main__":
    main()
