"""The fleet page (`memprobe compare` of three or more scans, memprobe/report/fleet.py) on real
scans: three honest quick scans of one machine made back to back (tests/data/make_fixtures.py
honest), and copies with memory's bandwidth changed as a slow node's scan would hold it."""

import copy
import re
from pathlib import Path

import pandas as pd

from memprobe import cli
from memprobe.report.fleet import fleet_frame, outliers, render_fleet
from memprobe.result import ScanResult
from memprobe.spread import scale_memory_bandwidth

DATA = Path(__file__).parent / "data"


def honest(k: int) -> ScanResult:
    return ScanResult.load(DATA / f"scan_honest_{k}.json")


def slow_memory(r: ScanResult, factor: float = 0.5) -> ScanResult:
    """A copy whose memory moves `factor` times the bytes: figures and memory's samples."""
    r = copy.deepcopy(r)
    scale_memory_bandwidth(r.devices["cpu"], factor)
    return r


def save_all(tmp_path: Path, scans: dict[str, ScanResult]) -> None:
    for name, r in scans.items():
        (tmp_path / name).mkdir()
        r.save(tmp_path / name / "scan.json")


def rows(html: str) -> list[str]:
    table = html[html.index('<section id="fleet">'):html.index('<section id="figures">')]
    return re.findall(r"<tr(?: class=\"flag\")?><td>(?!<b>median).*?</tr>", table)


def test_size_columns_show_sizes(tmp_path):
    """pandas holds three scans' sizes as NumPy integers: every size cell showed '—'."""
    html, csv_text, _ = render_fleet([honest(k).summary() for k in (1, 2, 3)], ["a", "b", "c"])
    cols = re.findall(r'<th class="n">([^<]+)<br>', html)
    body = rows(html)
    assert len(body) == 3
    for r in body:
        cells = re.findall(r'<td class="n">(?:<b>)?([^<]*)', r)
        for c in ("L1 size_bytes", "L2 size_bytes", "L3 size_bytes"):
            v = cells[cols.index(c)]
            assert re.fullmatch(r"[\d.]+ (KiB|MiB)", v), (c, v)
    df = pd.read_csv(__import__("io").StringIO(csv_text))
    assert df["L1 size_bytes"].notna().all()


def test_three_honest_scans_flag_no_outlier():
    """Three quick scans of one machine, back to back (tests/data/make_fixtures.py honest): the
    robust rule alone shades figures (the MAD of three values is no measure of a figure's
    noise); with each scan's own spread (both bandwidth rounds, and the widest move of a round's
    best among the level's kernels, memprobe/spread.py) none is an outlier."""
    sums = [honest(k).summary() for k in (1, 2, 3)]
    df = fleet_frame(sums)
    assert outliers(df), "the rule without the scans' spread flags nothing: the fixtures no longer test it"
    assert outliers(df, [s.bands for s in sums], [s.busy for s in sums]) == {}


def memory_lines(out: str) -> list[str]:
    """The outlier lines about memory's figures. (The slow node is a copy of run1 with its
    memory halved: its other figures equal run1's, and two equal values shrink the fleet's MAD,
    so those columns can name an honest run on their own; these tests are about memory.)"""
    return [ln for ln in out.splitlines() if ln.startswith("outlier:") and " memory " in ln]


def test_a_slow_node_among_honest_scans_is_named_by_its_folder(tmp_path, capsys):
    """All four scans say host 'vm': the outlier line names the scan by its folder."""
    save_all(tmp_path, {"run1": honest(1), "run2": honest(2), "run3": honest(3), "slow": slow_memory(honest(1))})
    out = tmp_path / "fleet.html"
    assert cli.main(["compare", str(tmp_path / "*" / "scan.json"), "--out", str(out)]) == 0
    lines = memory_lines(capsys.readouterr().out)
    assert lines and all(ln.startswith("outlier: vm (slow) memory ") for ln in lines), lines
    slow_row = next(r for r in rows(out.read_text()) if "vm (slow)" in r)
    assert slow_row.startswith('<tr class="flag">')


def test_jsonl_lines_of_one_host_are_named_by_file_and_line(tmp_path, capsys):
    log = tmp_path / "f.jsonl"
    for r in (honest(1), honest(2), honest(3), slow_memory(honest(1))):
        cli.append_jsonl(log, r)
    assert cli.main(["compare", str(log), "--out", str(tmp_path / "f.html")]) == 0
    lines = memory_lines(capsys.readouterr().out)
    assert lines and all(ln.startswith("outlier: vm (f.jsonl:4) memory ") for ln in lines), lines


def test_a_figure_measured_beside_busy_neighbours_is_never_named(tmp_path):
    """The same slow copy, its bandwidth stage recorded beside other processes at 90 % of a
    CPU: its memory figures read slow for a reason the scan saw; marked, not named."""
    slow = slow_memory(honest(1))
    slow.devices["cpu"].extra.stage_others_percent["bandwidth"] = 90.0
    sums = [honest(1).summary(), honest(2).summary(), honest(3).summary(), slow.summary()]
    assert "memory read threads_all" in sums[3].busy
    html, _, lines = render_fleet(sums, ["run1", "run2", "run3", "slow"])
    assert not any("(slow) memory" in ln for ln in lines), lines
    slow_row = next(r for r in rows(html) if "vm (slow)" in r)
    assert 'title="measured beside busy neighbours">*' in slow_row
