"""Beside the flow: build benchmarks/data/published/ (the curves infer_published.py scores) from
a local clone of github.com/ThomasKaiser/sbc-bench, so the benchmark runs offline. Run once;
the files it writes are committed.

usage: python benchmarks/published_build.py SBC_BENCH_GIT_DIR [GPU_BENCHES_GIT_DIR]

Each chosen curve is one ramlat table (the 1xPTR column: one dependent pointer chase) of one
result file. Its declared caches are those of the core that ran it:
- "lscpu": machines of one core type, whose lscpu prints `size (N instances)`; each cache is
  the total over its instances (sbcbench.declared_caches);
- "vendor": machines with two core types, where lscpu's totals mix them: the vendor's per-core
  figures, cited in `declared_source`.
Files whose caches cannot be attributed to the core that ran ramlat are not chosen. Where the
file also holds tinymembench's latency test run on that core with 4 KiB and with huge pages
(sbcbench.page_pair), the pair is written beside the curve (`pages_csv`: size_bytes, small_ns,
huge_ns), which inference reads to tell a TLB's reach from a cache.

With a clone of github.com/RRZE-HPC/gpu-benches, its gpu-latency curves of the GPUs not already
in ../shared/curves are added: one pointer chase of one thread block, size in KiB (column 3,
`skip_factor * LEN * cl_size * sizeof(dtype) / 1024.0` in main.cu) and the median latency in
SM cycles (column 6), as plot.py reads them; the declared L1 is the combined L1/shared memory
per SM or CU (its usable share depends on the driver's carve-out), the L2 and Infinity Cache
the vendor's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memprobe.infer import sbcbench

OUT = Path(__file__).resolve().parent / "data" / "published"
K, M = 1 << 10, 1 << 20

# one core type, lscpu with instance counts (two per SoC at most, so no one chip dominates)
LSCPU = ["3Y4f", "445T", "446h", "44pd", "4BtC", "4DLw", "4EcO", "4HYd", "4dd5", "4eiM", "4f3I",
         "4hOp", "4hau", "4hwl", "4j4o", "4pEc", "4qpr", "4r54", "4vxM", "4xwq", "4zGI", "4zkJ",
         "8-NK", "84GG", "87lq", "88vb", "8hUb", "8to7qX", "X904", "XObB", "XUpQ", "Xh2H"]
RK3588 = ("Rockchip RK3588 datasheet (Cortex-A76: 64 KB L1D, 512 KB L2 per core; Cortex-A55: "
          "32 KB L1D, 128 KB L2 per core; 3 MB L3 in the DSU, shared by all eight)")
RPL = ("Intel Core i7-1360P (Raptor Lake-P): P-core 48 KB L1D and 1.25 MB L2 per core, E-core "
       "32 KB L1D and 2 MB L2 per 4-core module, 18 MB L3 (Intel ARK; lscpu's 9 MiB L2 in 6 "
       "instances = 4 x 1.25 + 2 x 2 agrees)")
MTL = ("Intel Core Ultra 9 185H (Meteor Lake-H): P-core (Redwood Cove) 48 KB L1D and 2 MB L2 per "
       "core, E-core (Crestmont) 32 KB L1D and 2 MB L2 per 4-core module, 24 MB L3 (Intel ARK; "
       "lscpu's 544 KiB L1d = 6 x 48 + 8 x 32 agrees)")
XAVIER = ("NVIDIA Jetson AGX Xavier (Carmel): 64 KB L1D per core, 2 MB L2 per 2-core cluster, "
          "4 MB L3 (NVIDIA Jetson AGX Xavier series data sheet)")
# (file, ramlat table index, {cache: bytes}, source)
VENDOR = [
    ("1Xuf1O1", 0, {"L1d": 32 * K, "L2": 128 * K, "L3": 3 * M}, RK3588),
    ("1Xuf1O1", 1, {"L1d": 64 * K, "L2": 512 * K, "L3": 3 * M}, RK3588),
    ("3XTA", 0, {"L1d": 32 * K, "L2": 128 * K, "L3": 3 * M}, RK3588),
    ("3XTA", 1, {"L1d": 64 * K, "L2": 512 * K, "L3": 3 * M}, RK3588),
    ("4E5J", 0, {"L1d": 48 * K, "L2": 1280 * K, "L3": 18 * M}, RPL),
    ("4E5J", 1, {"L1d": 32 * K, "L2": 2 * M, "L3": 18 * M}, RPL),
    ("XRRi", 0, {"L1d": 48 * K, "L2": 2 * M, "L3": 24 * M}, MTL),
    ("XRRi", 1, {"L1d": 32 * K, "L2": 2 * M, "L3": 24 * M}, MTL),
    ("3YWp", 0, {"L1d": 64 * K, "L2": 2 * M, "L3": 4 * M}, XAVIER),
]


AMPERE = "NVIDIA A100 Tensor Core GPU architecture whitepaper (192 KB L1/shared per SM; A100 80GB: 40 MB L2)"
GA102 = "NVIDIA Ampere GA102 GPU architecture whitepaper (A40: 128 KB L1/shared per SM, 6 MB L2)"
HOPPER = "NVIDIA H100 Tensor Core GPU architecture whitepaper (256 KB L1/shared per SM, 50 MB L2); GH200 datasheet"
VOLTA = "NVIDIA Tesla V100 GPU architecture whitepaper (128 KB L1/shared per SM, 6 MB L2)"
CDNA1 = "AMD CDNA architecture whitepaper (MI100: 16 KB L1 per CU, 8 MB L2)"
CDNA3 = ("AMD CDNA 3 architecture whitepaper (MI300X/MI300A: 32 KB L1 per CU, 4 MB L2 per XCD, "
         "256 MB Infinity Cache)")
# gpu-benches gpu-latency file -> (machine, {cache: bytes}, source)
GPUS = {
    "a100_80": ("NVIDIA A100 80GB", {"L1": 192 * K, "L2": 40 * M}, AMPERE),
    "a40": ("NVIDIA A40", {"L1": 128 * K, "L2": 6 * M}, GA102),
    "gh200": ("NVIDIA GH200 (H100)", {"L1": 256 * K, "L2": 50 * M}, HOPPER),
    "v100": ("NVIDIA V100", {"L1": 128 * K, "L2": 6 * M}, VOLTA),
    "mi100": ("AMD Instinct MI100", {"L1": 16 * K, "L2": 8 * M}, CDNA1),
    "mi300x": ("AMD Instinct MI300X", {"L1": 32 * K, "L2": 4 * M, "Infinity Cache": 256 * M}, CDNA3),
    "mi300a": ("AMD Instinct MI300A", {"L1": 32 * K, "L2": 4 * M, "Infinity Cache": 256 * M}, CDNA3),
}


def gpu_curves(repo: str, index: dict) -> None:
    for name, (machine, declared, source) in GPUS.items():
        path = f"gpu-latency/{name}.txt"
        text = git(repo, "show", f"HEAD:{path}")
        commit = git(repo, "log", "-1", "--format=%H", "--", path).strip()
        rows = []
        for line in text.splitlines():
            tok = line.split()
            if len(tok) < 8 or tok[0] == "clock:":
                continue
            rows.append((float(tok[2]) * 1024, float(tok[5])))
        key = f"gpubench_{name}"
        (OUT / f"{key}.csv").write_text("size_bytes,latency_cycles\n" + "".join(f"{int(round(b))},{c:g}\n" for b, c in rows))
        index[key] = {"machine": machine, "core": machine, "table": "gpu-latency", "column": "median cycles",
                      "source": {"repo": "RRZE-HPC/gpu-benches", "path": path, "commit": commit},
                      "declared_caches": declared, "declared_source": source, "csv": f"{key}.csv"}


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, errors="replace",
                          check=True).stdout


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__.strip().splitlines()[5], file=sys.stderr)
        return 2
    repo = argv[0]
    OUT.mkdir(parents=True, exist_ok=True)
    index = {}
    chosen = [(f, 0, None, "lscpu") for f in LSCPU] + VENDOR
    for name, table, declared, source in chosen:
        path = f"results/{name}.txt"
        text = git(repo, "show", f"HEAD:{path}")
        commit = git(repo, "log", "-1", "--format=%H", "--", path).strip()
        t = sbcbench.tables(text, path)[table]
        if declared is None:
            caches, note = sbcbench.declared_caches(text)
            declared = {f"L{c.level}{'d' if c.type == 'Data' else ''}": c.size_bytes
                        for c in caches if c.type != "Instruction"}
            source = note
        model = next(iter(sbcbench.MODEL.findall(text)), "").strip()
        key = f"{name}_{t.cpu}"
        rows = [(s, v) for s, v in zip(t.size_bytes, t.values[sbcbench.DEFAULT_COLUMN]) if v > 0]
        (OUT / f"{key}.csv").write_text("size_bytes,latency_ns\n" + "".join(f"{int(s)},{v:g}\n" for s, v in rows))
        index[key] = {"machine": model, "core": t.core or model, "table": t.label,
                      "column": sbcbench.DEFAULT_COLUMN,
                      "source": {"repo": "ThomasKaiser/sbc-bench", "path": path, "commit": commit},
                      "declared_caches": declared, "declared_source": source, "csv": f"{key}.csv"}
        pair = sbcbench.page_pair(text, t.cpu)
        if pair is not None:
            (OUT / f"{key}_pages.csv").write_text("size_bytes,small_ns,huge_ns\n" + "".join(
                f"{int(s)},{a:g},{b:g}\n" for s, a, b in zip(pair.size_bytes, pair.small, pair.huge)))
            index[key]["pages_csv"] = f"{key}_pages.csv"
    if len(argv) == 2:
        gpu_curves(argv[1], index)
    (OUT / "sources.json").write_text(json.dumps({"note": __doc__.strip().splitlines()[0], "curves": index},
                                                 indent=1) + "\n")
    print(f"{len(index)} curves written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
