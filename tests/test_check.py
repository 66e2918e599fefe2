"""memprobe check (a scan against a baseline) and the fleet report (compare of many scans),
on real scans: honest repeats of one machine (the noise a check must absorb) and copies with
figures changed as a failing node would change them."""

import copy
import json
from pathlib import Path

import pytest

from memprobe import cli
from memprobe.check import check_scan
from memprobe.result import ScanResult

DATA = Path(__file__).parent / "data"


def scan() -> ScanResult:
    return ScanResult.load(DATA / "scan_small.json")


def honest(k: int) -> ScanResult:
    """Quick scans of one machine made back to back (tests/data/make_fixtures.py honest)."""
    return ScanResult.load(DATA / f"scan_honest_{k}.json")


def scaled_memory(r: ScanResult, factor: float) -> ScanResult:
    """A copy whose memory moves `factor` times the bytes (spread.scale_memory_bandwidth)."""
    from memprobe.spread import scale_memory_bandwidth

    r = copy.deepcopy(r)
    scale_memory_bandwidth(r.devices["cpu"], factor)
    return r


def test_a_scan_holds_against_itself(tmp_path, capsys):
    assert check_scan(scan(), scan()).ok
    p = tmp_path / "scan.json"
    scan().save(p)
    assert cli.main(["check", str(p), "--baseline", str(p)]) == 0
    assert "ok:" in capsys.readouterr().out


def test_twice_the_memory_bandwidth_in_the_baseline_fails_naming_memory(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    scan().save(a)
    scaled_memory(scan(), 2.0).save(b)
    assert cli.main(["check", str(a), "--baseline", str(b), "--json"]) == 1
    rec = json.loads(capsys.readouterr().out)
    failed = [c["figure"] for c in rec["checks"] if c["status"] == "fail"]
    assert failed and all(f.startswith("cpu memory ") for f in failed)
    assert all(c["ratio"] == pytest.approx(0.5) for c in rec["checks"] if c["status"] == "fail")


def test_honest_repeats_the_old_rule_failed_now_pass():
    """Two honest pairs (one machine, scans seconds apart) that the tolerance alone failed on
    an L2 and an L3 all-thread bandwidth: each figure's gap lies within the two scans' spread."""
    from memprobe.check import TOLERANCES

    for scan_, base in ((honest(3), honest(1)), (ScanResult.load(DATA / "scan_gpu.json"), scan())):
        rep = check_scan(scan_, base)
        assert rep.ok, [(c.figure, c.measured, c.baseline) for c in rep.failed]
        beyond_tol = [c for c in rep.checks if c.status == "ok" and c.unit == "GB/s"
                      and c.measured < c.baseline * (1 - TOLERANCES["bandwidth"])]
        assert beyond_tol and all(c.within_spread for c in beyond_tol)


def test_the_doubled_memory_baseline_fails_naming_memory_alone():
    """A node whose memory moves half the bytes of its baseline fails, naming memory alone:
    against a doctored copy of itself, of each honest scan, and of the other scan of the
    honest pair that holds (the noise of a second run does not hide the fault)."""
    for k, j in ((1, 1), (2, 2), (3, 3), (3, 1)):
        rep = check_scan(honest(k), scaled_memory(honest(j), 2.0))
        assert not rep.ok
        assert all(c.figure.startswith("cpu memory ") and c.unit == "GB/s" for c in rep.failed), \
            [c.figure for c in rep.failed]


def test_a_level_one_scan_missed_is_a_warning_never_paired_with_another(tmp_path, capsys):
    """The issue's pair: the scan missed the L3 and found a level near memory eight times its
    size (116 ns); nearest size alone compared it with the baseline's L3 (14 ns) and failed."""
    from memprobe.result import Level

    base = honest(1)
    r = copy.deepcopy(honest(3))
    cpu = r.devices["cpu"]
    l3 = cpu.level("L3")
    far = Level("L3", 64 << 20, 116.0, 300.0, bandwidth_gbs=copy.deepcopy(l3.bandwidth_gbs),
                size_interval_bytes=[48 << 20, 80 << 20], edge="sharp")
    cpu.levels[cpu.levels.index(l3)] = far
    rep = check_scan(r, base)
    assert not any(c.figure.startswith("cpu L3 ") for c in rep.checks)
    assert rep.ok, [c.figure for c in rep.failed]
    assert any("the scan's L3 (64 MiB" in w for w in rep.warnings), rep.warnings
    from memprobe.report.text import size_text

    assert any(f"the baseline's L3 ({size_text(base.devices['cpu'].level('L3').size_bytes)}" in w
               for w in rep.warnings), rep.warnings
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    r.save(a)
    base.save(b)
    assert cli.main(["check", str(a), "--baseline", str(b)]) == 0
    err = capsys.readouterr().err
    assert "64 MiB" in err and "e+" not in err


def test_fail_lines_print_sizes_and_bands_in_human_units(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    honest(1).save(a)
    scaled_memory(honest(1), 2.0).save(b)
    assert cli.main(["check", str(a), "--baseline", str(b)]) == 1
    out = capsys.readouterr().out
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL ")]
    assert fails and all("bands of the two scans" in ln and "e+" not in ln for ln in fails)
    assert out.splitlines()[-1].startswith("FAILED: ")


@pytest.mark.parametrize("text, frac", [("5", 0.05), ("5%", 0.05), ("5 %", 0.05), ("0.05", 0.05),
                                        ("12.5", 0.125), ("1", 0.01), ("0.5", 0.5), ("99%", 0.99)])
def test_tolerance_forms(text, frac):
    assert cli.parse_tolerance(text) == pytest.approx(frac)


@pytest.mark.parametrize("text", ["0", "0%", "100", "100%", "250%", "-5", "abc", "0.0"])
def test_tolerance_out_of_range_is_refused(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_tolerance(text)


def test_tolerance_5_is_accepted_on_the_command_line(tmp_path, capsys):
    p = tmp_path / "scan.json"
    honest(1).save(p)
    assert cli.main(["check", str(p), "--baseline", str(p), "--tolerance", "5", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert {c["tolerance"] for c in rec["checks"] if c["unit"] != "B"} == {0.05}


def test_check_help_prints_single_percent_signs(capsys):
    with pytest.raises(SystemExit):
        cli.main(["check", "--help"])
    out = capsys.readouterr().out
    assert "25 %" in out and "%%" not in out


def test_check_refuses_bad_input(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert cli.main(["check", str(bad), "--baseline", str(bad)]) == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["check", str(bad), "--baseline", str(bad), "--tolerance", "250%"])
    assert exc.value.code == 2


def test_a_fleet_of_five_names_the_slow_node_and_no_other(tmp_path, capsys):
    paths = []
    for k, factor in enumerate([1.0, 1.02, 0.98, 0.5, 1.01]):
        r = scaled_memory(scan(), factor)
        r.host = f"node{k}"
        d = tmp_path / r.host
        d.mkdir()
        r.save(d / "scan.json")
        paths.append(d / "scan.json")
    out = tmp_path / "fleet.html"
    assert cli.main(["compare", str(tmp_path / "*" / "scan.json"), "--out", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("outlier:")]
    assert lines and all(ln.startswith("outlier: node3 memory") for ln in lines), lines
    html = out.read_text()
    assert "node3" in html and "<script" not in html and "<svg" in html
    import pandas as pd

    df = pd.read_csv(out.with_suffix(".csv"))
    assert list(df["host"]) == [f"node{k}" for k in range(5)]


def test_jsonl_lines_feed_the_fleet_report(tmp_path, capsys):
    log = tmp_path / "fleet.jsonl"
    for k, factor in enumerate([1.0, 1.01, 0.99, 1.0, 0.45]):
        r = scaled_memory(scan(), factor)
        r.host = f"n{k}"
        cli.append_jsonl(log, r)
    assert len(log.read_text().splitlines()) == 5
    assert cli.main(["compare", str(log), "--out", str(tmp_path / "f.html")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("outlier:")]
    assert lines and all(ln.startswith("outlier: n4 ") for ln in lines)


def test_a_vms_last_cache_latency_is_informational_elsewhere_judged():
    """A VM's last cache is a slice other guests share: its plateau's latency moves with them
    (11.8-16.6 ns over thirty quiet scans of one guest), as its size does. On bare metal the
    same L3 at twice its latency (past both bands) fails."""
    base = honest(1)
    slow = copy.deepcopy(base)
    cpu = slow.devices["cpu"]
    last = [lv for lv in cpu.levels if lv.size_bytes][-1]
    last.latency_ns *= 2.0
    assert base.machine.virtual_machine
    c = next(c for c in check_scan(slow, base).checks if c.figure == f"cpu {last.name} latency_ns")
    assert c.status == "info"
    for r in (slow, base):
        r.machine.virtual_machine = None
    c = next(c for c in check_scan(slow, base).checks if c.figure == f"cpu {last.name} latency_ns")
    assert c.status == "fail"
