"""Readers of other tools' output (memprobe/infer/sbcbench.py, tinymembench.py), picked by
content behind `memprobe infer CURVE`.

Samples: excerpts, unchanged line for line, of ThomasKaiser/sbc-bench results/1Xuf1O1.txt
@e25a677 (RK3588: Cortex-A55 + Cortex-A76): its three ramlat tables and its lscpu section
(`sbcbench_rk3588_excerpt.txt`), and the first tinymembench latency table, run on cpu0, a
Cortex-A55 (`tinymembench_rk3588_a55_excerpt.txt`)."""

import json
from pathlib import Path

import pytest

from memprobe.errors import InputError
from memprobe.infer import infer_levels, sbcbench
from memprobe.infer.curves import parse_curve, read_curve_file

DATA = Path(__file__).parent / "data"
SBC = DATA / "sbcbench_rk3588_excerpt.txt"
TMB = DATA / "tinymembench_rk3588_a55_excerpt.txt"
K, M = 1 << 10, 1 << 20


def test_sbcbench_tables_and_default_column():
    text = SBC.read_text()
    ts = sbcbench.tables(text)
    assert [t.label for t in ts] == ["cpu0 (Cortex-A55)", "cpu4 (Cortex-A76)", "cpu6 (Cortex-A76)"]
    c = read_curve_file(SBC)
    assert c.unit == "ns" and "cpu0 (Cortex-A55), 1xPTR" in c.source_format
    assert c.size_bytes[0] == 4 * K and c.size_bytes[-1] == 128 * M and len(c.size_bytes) == 16
    assert c.latency[0] == pytest.approx(1.097) and c.latency[4] == pytest.approx(10.36)


def test_sbcbench_column_and_table_choice():
    c = read_curve_file(SBC, column="2xPTR", table=1)
    assert "cpu4 (Cortex-A76), 2xPTR" in c.source_format
    assert c.latency[5] == pytest.approx(6.041)
    with pytest.raises(InputError, match="no column '3xPTR'"):
        read_curve_file(SBC, column="3xPTR")
    with pytest.raises(InputError, match="no ramlat table 7"):
        read_curve_file(SBC, table=7)


def test_sbcbench_declared_caches_ride_beside_and_are_not_read():
    c = read_curve_file(SBC)
    got = {(d.level, d.type): d.size_bytes for d in c.declared}
    assert got == {(1, "Data"): 48 * K, (1, "Instruction"): 48 * K, (2, "Unified"): 320 * K, (3, "Unified"): 3 * M}
    assert "different kinds" in c.declared_note and "which core" in c.declared_note
    # inference reads the curve alone: with the declared caches dropped the answer is the same
    a = infer_levels(c.size_bytes, c.latency, c.unit)
    c.declared = []
    b = infer_levels(c.size_bytes, c.latency, c.unit)
    assert [(lv.size_bytes, lv.latency) for lv in a.levels] == [(lv.size_bytes, lv.latency) for lv in b.levels]


def test_older_lscpu_sizes_are_read_as_printed():
    caches, note = sbcbench.declared_caches("L1d cache:           32K\nL2 cache:            512K\n")
    assert [(d.level, d.size_bytes) for d in caches] == [(1, 32 * K), (2, 512 * K)]
    assert "older lscpu" in note


def test_tinymembench_reads_single_random_read_plus_an_l1_hit():
    c = read_curve_file(TMB)
    assert "tinymembench" in c.source_format and "+ 1 ns" in c.source_format
    assert c.size_bytes[0] == 1024 and c.size_bytes[-1] == 64 * M
    assert c.latency[0] == pytest.approx(1.0) and c.latency[-1] == pytest.approx(122.4)
    h = infer_levels(c.size_bytes, c.latency, c.unit)
    assert h.memory_reached and h.levels[-1].latency == pytest.approx(110, rel=0.15)


def test_tinymembench_prefers_the_huge_page_table():
    text = ("block size : single random read / dual random read, [MADV_NOHUGEPAGE]\n"
            + "".join(f"{1 << k:>10} :  {k:.1f} ns          /  0.0 ns\n" for k in range(10, 16))
            + "\nblock size : single random read / dual random read, [MADV_HUGEPAGE]\n"
            + "".join(f"{1 << k:>10} :  {2 * k:.1f} ns          /  0.0 ns\n" for k in range(10, 16)))
    c = parse_curve(text)
    assert "MADV_HUGEPAGE" in c.source_format and c.latency[0] == pytest.approx(21.0)


def test_csv_and_lmbench_still_read():
    assert parse_curve("size_bytes,latency_ns\n1024,1\n2048,1\n4096,2\n8192,3\n").source_format == "csv"
    assert parse_curve("0.001 1\n0.002 1\n0.004 2\n0.008 3\n").source_format == "lmbench"
    with pytest.raises(InputError, match="--column applies to sbc-bench"):
        parse_curve("0.001 1\n0.002 1\n0.004 2\n0.008 3\n", column="1xPTR")


def test_cli_infer_sbcbench_json_shows_declared(capsys):
    from memprobe.cli import main

    assert main(["infer", str(SBC), "--table", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "Cortex-A76" in out["format"]
    assert {d["size_bytes"] for d in out["declared"]} >= {3 * M}
    assert out["levels"][-1]["name"] == "memory"


def test_cli_infer_bad_column_is_one_line(capsys):
    from memprobe.cli import main

    assert main(["infer", str(SBC), "--column", "nope"]) != 0
    err = capsys.readouterr().err
    assert "no column 'nope'" in err and "Traceback" not in err


def _tmb(kind, rows):
    return (f"block size : single random read / dual random read, [{kind}]\n"
            + "".join(f"{s:>10} : {v:6.1f} ns          / {v:6.1f} ns \n" for s, v in rows) + "\n")


def test_page_pair_is_read_for_the_ramlat_core_only():
    """sbc-bench's tinymembench runs per cluster ("Executing benchmark on cpuN"): the 4 KiB- and
    huge-page tables of the core that ran ramlat are the pair; a file with tables of no core
    named has one cluster; an old tinymembench (no [MADV_...] tag) gives none."""
    rows_a = [(1 << k, float(k)) for k in range(10, 20)]
    rows_b = [(1 << k, 2.0 * k) for k in range(10, 20)]
    text = ("Executing benchmark on cpu0 (Cortex-A55):\n" + _tmb("MADV_NOHUGEPAGE", rows_a)
            + _tmb("MADV_HUGEPAGE", rows_a)
            + "Executing benchmark on cpu4 (Cortex-A76):\n" + _tmb("MADV_NOHUGEPAGE", rows_b)
            + _tmb("MADV_HUGEPAGE", [(s, v - 1) for s, v in rows_b]))
    p = sbcbench.page_pair(text, "cpu4")
    assert p.small[:2] == [20.0, 22.0] and p.huge[:2] == [19.0, 21.0] and p.size_bytes[0] == 1024
    assert sbcbench.page_pair(text, "cpu0").small[0] == 10.0
    one = _tmb("MADV_NOHUGEPAGE", rows_a) + _tmb("MADV_HUGEPAGE", rows_a)
    assert sbcbench.page_pair(one, "cpu0") is not None
    assert sbcbench.page_pair(SBC.read_text(), "cpu0") is None
