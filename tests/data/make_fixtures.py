"""Writes the report's test fixtures from the real code paths (never by hand):

    python3 tests/data/make_fixtures.py

- scan_small.json: a real quick CPU scan (latency sweep capped at 64 MiB, the loaded-latency
  stage run too) with the quick training study;
- scan_gpu.json: the same kind of CPU scan plus the real GPU scan run under Numba's CUDA
  simulator on the tests' fake device (tests/fake_gpu.py), with the training study on both
  devices (the GPU half under the simulator too): every figure of the GPU half is a logic
  check, not a measurement, and the file says so in settings.fixture and a warning;
- scan_incomplete.json: a real quick scan stopped (KeyboardInterrupt) after the level
  inference, as Ctrl-C leaves it;
- scan_honest_1.json .. scan_honest_3.json: three quick CPU scans of this machine back to back,
  without the training study, as `memprobe scan --quick --no-train` writes them: honest repeats
  of one machine, for the rules that must tell run-to-run noise from a fault (`check`, the
  fleet's outliers); `python3 tests/data/make_fixtures.py honest` makes these alone;
- scan_rates.json: a quick CPU scan without the study, with PyTorch installed: its rate table
  (`python3 tests/data/make_fixtures.py rates`, needs the torch extra);
- training_families.json: CNN and transformer points (with their per-op breakdowns) of a real
  `memprobe train --model all` run, a few per family (1 thread; batch 16 at every level and
  batch 1 at the smallest), without their per-step samples and with 4 significant digits:
  `python3 tests/data/make_fixtures.py families OUT/scan.json` (needs the torch extra; the
  report tests put these points into scan_small.json's study).

Run it on any machine after a change to what a scan writes; the tests read these files as
`memprobe report` would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/fake_gpu.py
# the simulator must be on before numba.cuda is first imported
os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

from fake_gpu import FakeDevice  # noqa: E402

from memprobe.scan import ScanOptions, Stage, new_result, no_progress, run_scan  # noqa: E402

MiB = 1 << 20


def cpu_scan(train: bool):
    """A quick scan with the loaded-latency stage too (the quick profile leaves it out; the
    report's section needs its points)."""
    import dataclasses

    opts = ScanOptions(quick=True, max_size_bytes=64 * MiB, train=train)
    prof = opts.profile()
    prof = dataclasses.replace(prof, cpu=dataclasses.replace(
        prof.cpu, stages_left_out=tuple(s for s in prof.cpu.stages_left_out if s != "loaded_latency")))
    return opts, run_scan(opts, no_progress, profile=prof)


def small() -> None:
    _, res = cpu_scan(train=True)
    res.settings.fixture = "a real quick CPU scan (latency sweep capped at 64 MiB), made by tests/data/make_fixtures.py"
    res.save(HERE / "scan_small.json")


def gpu() -> None:
    from memprobe.scan.gpu import scan_gpu
    from memprobe.scan.training import run_training_study

    opts, res = cpu_scan(train=False)
    opts = ScanOptions(device="gpu", quick=True, max_size_bytes=64 * MiB, train=True)
    res.settings.device = "gpu"
    scan_gpu(opts, no_progress, res, device=FakeDevice())
    run_training_study(res, device="all", plan=opts.profile().training, budget_s=8.0)
    res.settings.fixture = ("a real quick CPU scan and the real GPU scan under the CUDA simulator on a fake "
                            "device (GPU figures are logic checks, not measurements), made by "
                            "tests/data/make_fixtures.py")
    res.save(HERE / "scan_gpu.json")


def incomplete() -> None:
    from memprobe.scan import cpu

    def stop(ctx) -> None:
        raise KeyboardInterrupt

    stages = cpu.CPU_STAGES
    cut = [s.name for s in stages].index("levels") + 1
    cpu.CPU_STAGES = stages[:cut] + (Stage("stop", stop, "Ctrl-C, as a user would press it"),)
    opts = ScanOptions(quick=True, max_size_bytes=32 * MiB, train=False)
    res = new_result(opts)
    try:
        run_scan(opts, no_progress, res)
    except KeyboardInterrupt:
        pass
    finally:
        cpu.CPU_STAGES = stages
    res.settings.fixture = ("a real quick CPU scan stopped by Ctrl-C after level inference, made by "
                            "tests/data/make_fixtures.py")
    res.save(HERE / "scan_incomplete.json")


def honest() -> None:
    for k in (1, 2, 3):
        res = run_scan(ScanOptions(quick=True, train=False), no_progress)
        res.settings.fixture = (f"honest repeat {k} of 3: a real quick CPU scan without the training study, "
                                "made back to back with the other two by tests/data/make_fixtures.py")
        res.save(HERE / f"scan_honest_{k}.json")


def rates() -> None:
    """scan_rates.json: `memprobe scan --quick --no-train` with PyTorch installed, so the scan
    carries its rate table (memprobe predict --on reads it)."""
    res = run_scan(ScanOptions(quick=True, train=False), no_progress)
    if res.devices["cpu"].rates is None or not res.devices["cpu"].rates.library.startswith("torch"):
        sys.exit("scan_rates.json needs PyTorch (pip install '.[torch]')")
    res.settings.fixture = "a real quick CPU scan without the training study, with PyTorch's rate table"
    res.save(HERE / "scan_rates.json")


def families(train_scan: str) -> None:
    import json

    def short(v):
        if isinstance(v, float):
            return float(f"{v:.4g}")
        if isinstance(v, list):
            return [short(x) for x in v]
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        return v

    pts = json.loads(Path(train_scan).read_text())["training"]["points"]
    keep = []
    for fam in ("cnn", "transformer"):
        fp = sorted((p for p in pts if p["model"] == fam and p["threads"] == "threads_1"),
                    key=lambda p: p["working_set_bytes"])
        keep += [p for p in fp if p["batch"] == 16] + [p for p in fp if p["batch"] == 1][:1]
    for p in keep:
        p["samples_s"] = []
    (HERE / "training_families.json").write_text(json.dumps(short(keep), separators=(",", ":")) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["families"]:
        families(sys.argv[2])
        sys.exit(0)
    if sys.argv[1:2] == ["honest"]:
        honest()
        sys.exit(0)
    if sys.argv[1:2] == ["rates"]:
        rates()
        sys.exit(0)
    for make in (small, gpu, incomplete, honest):
        make()
        print(f"wrote {make.__name__}", file=sys.stderr)
