"""A ReFrame check that runs `memprobe scan --quick --no-train` on a node and reports the scan's
key figures as performance variables (ReFrame >= 4.5):

    memory_latency     ns       main memory's latency (random chase)
    L1_bandwidth       GB/s     L1's triad bandwidth, all threads (STREAM counting)
    L2_bandwidth       GB/s     L2's triad bandwidth, all threads
    memory_bandwidth   GB/s     main memory's triad bandwidth, all threads
    fp64_flops         GFLOP/s  FP64 FMA ceiling, all threads

Each figure is read from the scan's `scan.json` through memprobe's typed loader
(`ScanResult.load`), as measured: a figure the scan flags (an all-thread figure below one
thread's on a busy node, for instance) is reported too, and the scan's report says why it is
flagged. Sanity: `scan.json` was written, loads, is complete, and holds every figure above.

References come from a baseline scan, `MEMPROBE_BASELINE=path/scan.json` in the environment or
`-S baseline=path/scan.json`, with a tolerance of 10 % (`-S tolerance=0.2` for 20 %): bandwidths
and FLOP/s may be at most that much lower, latency at most that much higher. Without a
baseline there are no references and the figures are only logged.

    reframe -C memprobe/contrib/reframe_settings.py --system slurm \\
        -c memprobe/contrib/reframe_check.py -r --distribute=all

`--distribute=all` runs one copy on each node of the partition. The check runs `memprobe`
from PATH on the node (`-S memprobe=/path/to/bin/memprobe` otherwise); ReFrame must run in a
Python environment where memprobe is installed, since the check reads the scan with it.
"""

import os
from typing import Optional

import reframe as rfm
import reframe.utility.sanity as sn
import reframe.utility.typecheck as typ
from reframe.core.builtins import performance_function, run_after, run_before, sanity_function, variable
from reframe.core.exceptions import SanityError

from memprobe.result import ScanResult, SchemaError

# performance variable -> (unit, lower is better, where it is in the scan's CPU record)
PERF_FIGURES = {
    "memory_latency": ("ns", True, "memory latency_ns"),
    "L1_bandwidth": ("GB/s", False, "L1 bandwidth_gbs triad threads_all"),
    "L2_bandwidth": ("GB/s", False, "L2 bandwidth_gbs triad threads_all"),
    "memory_bandwidth": ("GB/s", False, "memory bandwidth_gbs triad threads_all"),
    "fp64_flops": ("GFLOP/s", False, "compute fma float64 threads_all"),
}


def perf_figures(scan: ScanResult) -> dict[str, Optional[float]]:
    """Each performance variable's value in a scan's CPU record, None where it has none.

    Figures are taken as measured, including those the scan flags as implausible (an all-thread
    figure below one thread's on a busy node, for instance): against a baseline a disturbed
    figure then fails on performance, where it belongs, instead of going missing."""
    out: dict[str, Optional[float]] = dict.fromkeys(PERF_FIGURES)
    dev = scan.devices.get("cpu")
    if dev is None:
        return out
    memory = dev.levels[-1] if dev.levels and dev.levels[-1].size_bytes is None else None

    def triad(level) -> Optional[float]:
        return ((level.bandwidth_gbs or {}).get("triad") or {}).get("threads_all") if level else None

    out["memory_latency"] = memory.latency_ns if memory else None
    out["L1_bandwidth"] = triad(dev.level("L1"))
    out["L2_bandwidth"] = triad(dev.level("L2"))
    out["memory_bandwidth"] = triad(memory)
    if dev.compute is not None:
        out["fp64_flops"] = (dev.compute.fma.get("float64") or {}).get("threads_all")
    return out


def references(baseline: ScanResult, tolerance: float) -> dict:
    """ReFrame reference tuples (value, lower, upper, unit) from a baseline's figures."""
    out = {}
    for name, value in perf_figures(baseline).items():
        unit, lower_is_better, _ = PERF_FIGURES[name]
        if value is None or not value > 0:
            continue
        out[name] = (value, None, tolerance, unit) if lower_is_better else (value, -tolerance, None, unit)
    return out


@rfm.simple_test
class MemprobeScanCheck(rfm.RunOnlyRegressionTest):
    descr = "memprobe scan --quick --no-train: memory latency, L1/L2/memory bandwidth, FP64 FLOP/s"
    valid_systems = ["*"]
    valid_prog_environs = ["*"]
    sourcesdir = None
    num_tasks = 1
    num_tasks_per_node = 1
    exclusive_access = True
    time_limit = "10m"
    tags = {"memprobe", "health"}
    maintainers = ["memprobe"]
    keep_files = ["scan.json", "report.html"]

    #: the memprobe command on the node
    memprobe = variable(str, value="memprobe")
    #: options of `memprobe scan` before `--out`
    scan_options = variable(typ.List[str], value=["--quick", "--no-train", "--no-progress"])
    #: a baseline scan.json the references come from ("" for none)
    baseline = variable(str, value=os.environ.get("MEMPROBE_BASELINE", ""))
    #: how far each figure may fall short of the baseline's, as a fraction
    tolerance = variable(float, value=0.10)

    @run_after("init")
    def set_references(self):
        self._scan = None
        self._baseline_error = None
        if not self.baseline:
            return
        try:
            base = ScanResult.load(self.baseline)
        except SchemaError as exc:
            # failed in sanity, with the reason, rather than a test that silently does not load
            self._baseline_error = f"baseline {self.baseline}: {exc}"
            return
        self.reference = {"*": references(base, self.tolerance)}

    @run_before("run")
    def set_command(self):
        self.executable = self.memprobe
        self.executable_opts = ["scan", *self.scan_options, "--out", self.stagedir]

    def scan(self) -> ScanResult:
        if self._scan is None:
            path = os.path.join(self.stagedir, "scan.json")
            if not os.path.exists(path):
                raise SanityError(f"memprobe wrote no scan.json in {self.stagedir} (see {self.stderr})")
            try:
                scan = ScanResult.load(path)
            except SchemaError as exc:
                raise SanityError(f"{path}: {exc}") from None
            if not scan.complete:
                why = f"stopped by {scan.settings.stopped_by}" if scan.settings.stopped_by else "a stage failed"
                raise SanityError(f"{path} is incomplete ({why})")
            self._scan = scan
        return self._scan

    def figure(self, name: str) -> float:
        value = perf_figures(self.scan())[name]
        if value is None:
            raise SanityError(f"scan.json has no {PERF_FIGURES[name][2]} figure")
        return value

    @sanity_function
    def validate(self):
        if self._baseline_error:
            raise SanityError(self._baseline_error)
        for name in PERF_FIGURES:
            self.figure(name)
        return sn.assert_found(r"wrote \S*scan\.json", self.stderr)

    @performance_function("ns")
    def memory_latency(self):
        return self.figure("memory_latency")

    @performance_function("GB/s")
    def L1_bandwidth(self):
        return self.figure("L1_bandwidth")

    @performance_function("GB/s")
    def L2_bandwidth(self):
        return self.figure("L2_bandwidth")

    @performance_function("GB/s")
    def memory_bandwidth(self):
        return self.figure("memory_bandwidth")

    @performance_function("GFLOP/s")
    def fp64_flops(self):
        return self.figure("fp64_flops")
