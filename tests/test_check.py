"""memprobe check (a scan against a baseline) and the fleet report (compare of many scans),
on copies of a real scan fixture with figures changed as a failing node would change them."""

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


def scale_memory_bandwidth(r: ScanResult, factor: float) -> ScanResult:
    r = copy.deepcopy(r)
    mem = r.devices["cpu"].levels[-1]
    mem.bandwidth_gbs = {k: {t: (v * factor if v else v) for t, v in per.items()} for k, per in mem.bandwidth_gbs.items()}
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
    scale_memory_bandwidth(scan(), 2.0).save(b)
    assert cli.main(["check", str(a), "--baseline", str(b), "--json"]) == 1
    rec = json.loads(capsys.readouterr().out)
    failed = [c["figure"] for c in rec["checks"] if c["status"] == "fail"]
    assert failed and all(f.startswith("cpu memory ") for f in failed)
    assert all(c["ratio"] == pytest.approx(0.5) for c in rec["checks"] if c["status"] == "fail")


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
        r = scale_memory_bandwidth(scan(), factor)
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
        r = scale_memory_bandwidth(scan(), factor)
        r.host = f"n{k}"
        cli.append_jsonl(log, r)
    assert len(log.read_text().splitlines()) == 5
    assert cli.main(["compare", str(log), "--out", str(tmp_path / "f.html")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("outlier:")]
    assert lines and all(ln.startswith("outlier: n4 ") for ln in lines)
