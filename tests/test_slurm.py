"""memprobe under a scheduler (memprobe/contrib): the ReFrame check, and scans submitted to a
real Slurm (`.ci/slurm-up` starts a single-node one).

- The ReFrame check's logic (sanity, performance variables, references from a baseline) runs
  on a recorded scan through a stand-in `memprobe` that copies it: fast and exact.
- The check runs a real quick scan through ReFrame's local scheduler and launcher whenever
  ReFrame is installed, and against a baseline with twice the memory bandwidth it measured.
- With Slurm up (`sinfo` answers and a node is up): a quick scan through `srun` in the form
  docs/cluster.md gives, the check through ReFrame's Slurm scheduler (sbatch, srun), and a
  default scan stopped by `scancel` that leaves its partial scan.json. Without Slurm these
  skip, saying why.
"""

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import memprobe.contrib
from memprobe.result import ScanResult

DATA = Path(__file__).parent / "data"
CONTRIB = Path(memprobe.contrib.__file__).parent
CHECK = CONTRIB / "reframe_check.py"
SETTINGS = CONTRIB / "reframe_settings.py"
BIN = Path(sys.executable).parent
UP_STATES = ("idle", "mixed", "allocated", "completing")


def _env(**extra: str) -> dict[str, str]:
    """This Python's bin folder first on PATH (memprobe, reframe); no baseline unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMPROBE_BASELINE", "MEMPROBE_RFM_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _reframe_cmd() -> str:
    exe = shutil.which("reframe", path=_env()["PATH"])
    if exe is None:
        pytest.skip("ReFrame is not installed (pip install -e '.[test]' brings reframe-hpc)")
    return exe


@pytest.fixture(scope="module")
def reframe_cmd() -> str:
    pytest.importorskip("reframe", reason="ReFrame is not installed (pip install -e '.[test]' brings reframe-hpc)")
    return _reframe_cmd()


def _slurm_reason() -> str | None:
    """Why Slurm cannot run jobs here, or None when it can."""
    for tool in ("sinfo", "srun", "sbatch", "scancel", "squeue"):
        if shutil.which(tool) is None:
            return f"Slurm is not installed ({tool} not found; .ci/slurm-up installs and starts it)"
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "Slurm is not running (sinfo did not answer in 30 s)"
    if p.returncode != 0:
        return f"Slurm is not running (sinfo: {(p.stderr or p.stdout).strip()[:200]})"
    states = p.stdout.split()
    if not any(s.rstrip("*~#") in UP_STATES for s in states):
        return f"no Slurm node is up (sinfo states: {' '.join(states) or 'none'})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = _slurm_reason()
    if reason:
        pytest.skip(reason)


def run_reframe(cmd: str, where: Path, system: str, *args: str, **env: str):
    """ReFrame on the check: (exit code, output, the one test case of its run report)."""
    where.mkdir(parents=True, exist_ok=True)
    report = where / "report.json"
    p = subprocess.run([cmd, "-C", str(SETTINGS), "--system", system, "-c", str(CHECK), "-r",
                        "--prefix", str(where / "rfm"), "--report-file", str(report), "--nocolor", *args],
                       cwd=where, env=_env(TMPDIR=str(where), **env),  # ReFrame's log file: here
                       capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert report.exists(), out[-3000:]
    cases = json.loads(report.read_text())["runs"][0]["testcases"]
    assert len(cases) == 1, out[-3000:]
    return p.returncode, out, cases[0]


def why(case: dict, out: str) -> str:
    return f"{case['result']} in {case['fail_phase']}: {case['fail_reason']}\n{out[-3000:]}"


def perf(case: dict, system: str = "local") -> dict[str, list]:
    """{variable: [value, reference, lower, upper, unit, result]} of a run report's test case."""
    prefix = f"{system}:default:"
    return {k[len(prefix):]: v for k, v in case["perfvalues"].items() if k.startswith(prefix)}


VARIABLES = {"memory_latency": "ns", "L1_bandwidth": "GB/s", "L2_bandwidth": "GB/s",
             "memory_bandwidth": "GB/s", "fp64_flops": "GFLOP/s"}


def scale_memory_bandwidth(src: Path, dst: Path, factor: float) -> None:
    r = copy.deepcopy(ScanResult.load(src))
    mem = r.devices["cpu"].levels[-1]
    assert mem.size_bytes is None  # main memory
    mem.bandwidth_gbs = {k: {t: (v * factor if v else v) for t, v in per.items()}
                         for k, per in mem.bandwidth_gbs.items()}
    r.save(dst)


def fake_memprobe(tmp_path: Path, scan_json: Path) -> Path:
    """A `memprobe` that writes a recorded scan.json into --out, as the real one would."""
    exe = tmp_path / "fake-memprobe"
    exe.write_text(f"""#!{sys.executable}
import shutil, sys
from pathlib import Path
args = sys.argv[1:]
assert args[0] == "scan", args
out = Path(args[args.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
shutil.copy({str(scan_json)!r}, out / "scan.json")
print(f"wrote {{out / 'scan.json'}}", file=sys.stderr)
""")
    exe.chmod(0o755)
    return exe


# ---- importing memprobe needs no ReFrame -------------------------------------------------------
def test_memprobe_and_contrib_import_without_reframe():
    code = "import sys, memprobe, memprobe.contrib, memprobe.cli; sys.exit('reframe' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=_env()).returncode == 0


# ---- the check's logic on a recorded scan --------------------------------------------------------
def test_references_come_from_the_baseline_and_none_without(reframe_cmd, tmp_path):
    from memprobe.contrib.reframe_check import perf_figures

    def describe(**env):
        p = subprocess.run([reframe_cmd, "-C", str(SETTINGS), "--system", "local", "-c", str(CHECK), "--describe"],
                           cwd=tmp_path, env=_env(TMPDIR=str(tmp_path), **env), capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        return json.loads(p.stdout[p.stdout.index("["):])[0]

    assert describe()["reference"] == {}
    base = DATA / "scan_small.json"
    figures = perf_figures(ScanResult.load(base))
    assert all(v and v > 0 for v in figures.values()), figures
    ref = describe(MEMPROBE_BASELINE=str(base))["reference"]["*"]
    assert ref["memory_latency"] == [figures["memory_latency"], None, 0.1, "ns"]  # slower fails
    for name in ("L1_bandwidth", "L2_bandwidth", "memory_bandwidth", "fp64_flops"):
        assert ref[name] == [figures[name], -0.1, None, VARIABLES[name]]  # lower fails


def test_a_recorded_scan_passes_against_itself_with_references_set(reframe_cmd, tmp_path):
    scan = DATA / "scan_small.json"
    exe = fake_memprobe(tmp_path, scan)
    rc, out, case = run_reframe(reframe_cmd, tmp_path, "local", "-S", f"memprobe={exe}",
                                MEMPROBE_BASELINE=str(scan))
    assert rc == 0 and case["result"] == "pass", why(case, out)
    values = perf(case)
    assert set(values) == set(VARIABLES)
    for name, (value, ref, lower, upper, unit, result) in values.items():
        assert value == ref and unit == VARIABLES[name] and result == "pass", (name, values[name])


def test_twice_the_memory_bandwidth_in_the_baseline_fails_on_performance(reframe_cmd, tmp_path):
    scan = DATA / "scan_small.json"
    scale_memory_bandwidth(scan, tmp_path / "baseline.json", 2.0)
    exe = fake_memprobe(tmp_path, scan)
    rc, out, case = run_reframe(reframe_cmd, tmp_path, "local", "-S", f"memprobe={exe}",
                                "-S", f"baseline={tmp_path / 'baseline.json'}")
    assert rc != 0 and case["result"] == "fail" and case["fail_phase"] == "performance", why(case, out)
    failed = {name for name, v in perf(case).items() if v[5] == "fail"}
    assert failed == {"memory_bandwidth"}, perf(case)
    assert "memory_bandwidth" in case["fail_reason"]


@pytest.mark.parametrize("what", ["incomplete scan", "unreadable baseline"])
def test_an_incomplete_scan_or_a_bad_baseline_fails_sanity_saying_why(reframe_cmd, tmp_path, what):
    if what == "incomplete scan":
        exe, baseline, expect = fake_memprobe(tmp_path, DATA / "scan_incomplete.json"), "", "incomplete (stopped by SIGINT)"
    else:
        exe, baseline, expect = fake_memprobe(tmp_path, DATA / "scan_small.json"), str(tmp_path / "none.json"), "none.json"
    rc, out, case = run_reframe(reframe_cmd, tmp_path, "local", "-S", f"memprobe={exe}", MEMPROBE_BASELINE=baseline)
    assert rc != 0 and case["result"] == "fail" and case["fail_phase"] == "sanity", why(case, out)
    assert expect in case["fail_reason"], case["fail_reason"]


# ---- real scans through ReFrame's local scheduler ----------------------------------------------
@pytest.fixture(scope="module")
def local_run(reframe_cmd, tmp_path_factory):
    where = tmp_path_factory.mktemp("reframe-local")
    return where, *run_reframe(reframe_cmd, where, "local")


def test_the_check_runs_a_real_scan_with_the_local_launcher(local_run):
    where, rc, out, case = local_run
    assert rc == 0 and case["result"] == "pass", why(case, out)
    values = perf(case)
    assert set(values) == set(VARIABLES)
    for name, (value, ref, lower, upper, unit, result) in values.items():
        assert value > 0 and unit == VARIABLES[name], (name, values[name])
        assert lower is None and upper is None  # no baseline: logged, not checked
    log = (where / "rfm" / "perflogs" / "local" / "default" / "MemprobeScanCheck.log").read_text()
    assert all(f"{name}_value" in log for name in VARIABLES), log
    kept = ScanResult.load(Path(case["outputdir"]) / "scan.json")
    assert kept.complete and kept.settings.quick and not kept.settings.train


def test_a_real_scan_fails_against_twice_its_memory_bandwidth(reframe_cmd, local_run, tmp_path):
    _, rc, out, case = local_run
    assert rc == 0, why(case, out)
    scale_memory_bandwidth(Path(case["outputdir"]) / "scan.json", tmp_path / "baseline.json", 2.0)
    rc, out, case = run_reframe(reframe_cmd, tmp_path, "local", MEMPROBE_BASELINE=str(tmp_path / "baseline.json"))
    assert rc != 0 and case["fail_phase"] == "performance", why(case, out)
    values = perf(case)
    assert all(v[1] and v[1] > 0 for v in values.values()), values  # every reference set
    assert values["memory_bandwidth"][5] == "fail", values


# ---- a real Slurm ----------------------------------------------------------------------------
def test_a_quick_scan_through_srun_one_folder_per_node(slurm, tmp_path):
    """docs/cluster.md's recipe: srun's %N patterns do not reach a command's arguments, so the
    node's name comes from the task's environment."""
    t0 = time.monotonic()
    p = subprocess.run(["srun", "--nodes=1", "--ntasks-per-node=1", "bash", "-c",
                        'exec memprobe scan --quick --no-train --no-progress '
                        '--out "fleet/$SLURMD_NODENAME" --jsonl fleet/summary.jsonl'],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    folders = [d for d in (tmp_path / "fleet").iterdir() if d.is_dir()]
    assert [d.name for d in folders] == [socket.gethostname().split(".")[0]], folders
    scan = ScanResult.load(folders[0] / "scan.json")
    assert scan.complete and scan.settings.stopped_by is None and scan.settings.quick
    s = scan.summary()
    assert s.memory_latency_ns and s.bandwidth_gbs and s.fma_gflops and s.levels
    lines = (tmp_path / "fleet" / "summary.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["complete"] is True
    print(f"srun quick scan: {time.monotonic() - t0:.1f} s")


def test_the_check_through_reframes_slurm_scheduler(slurm, reframe_cmd, tmp_path):
    rc, out, case = run_reframe(reframe_cmd, tmp_path, "slurm", "--distribute=all")
    assert rc == 0 and case["result"] == "pass", why(case, out)
    assert case["scheduler"] == "squeue" and case["jobid"], case["scheduler"]
    script = next((tmp_path / "rfm" / "output").rglob("rfm_job.sh")).read_text()
    assert "#SBATCH" in script and "srun memprobe scan --quick" in script, script
    values = perf(case, "slurm")
    assert set(values) == set(VARIABLES) and all(v[0] > 0 for v in values.values()), values
    logs = list((tmp_path / "rfm" / "perflogs" / "slurm" / "default").glob("*.log"))
    assert logs and all(f"{name}_value" in logs[0].read_text() for name in VARIABLES)
    assert ScanResult.load(Path(case["outputdir"]) / "scan.json").complete


def _squeue_state(job: str) -> str:
    p = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    return p.stdout.strip() if p.returncode == 0 else ""


def test_scancel_stops_a_default_scan_which_leaves_its_partial_scan_json(slurm, tmp_path):
    out_dir, log = tmp_path / "scan", tmp_path / "job.log"
    p = subprocess.run(["sbatch", "--parsable", "--nodes=1", "--ntasks=1", f"--output={log}",
                        "--wrap", f"srun memprobe scan --no-progress --out {out_dir}"],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    job = p.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 180
        while "memprobe: " not in (log.read_text() if log.exists() else ""):  # measuring
            assert time.monotonic() < deadline, f"job {job} never started measuring ({_squeue_state(job)})"
            time.sleep(0.5)
        time.sleep(10)
        assert _squeue_state(job) == "RUNNING", "the default scan ended before scancel"
    finally:
        subprocess.run(["scancel", job], timeout=30)  # SIGTERM to the steps and the batch shell
    deadline = time.monotonic() + 120
    while _squeue_state(job):
        assert time.monotonic() < deadline, f"job {job} still listed 120 s after scancel"
        time.sleep(0.5)
    text = log.read_text()
    scan = ScanResult.load(out_dir / "scan.json")
    assert scan.complete is False and scan.settings.stopped_by == "SIGTERM", text[-2000:]
    assert "stopped by SIGTERM" in text, text[-2000:]
    assert (out_dir / "report.html").exists() and (out_dir / "curves.csv").exists()
