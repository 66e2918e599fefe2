"""The versioned result round-trips through JSON; bad documents are SchemaErrors."""

import json
import math

import pytest

from memprobe.result import SCHEMA, Curve, CurvePoint, DeviceResult, Level, ScanResult, SchemaError


def sample() -> ScanResult:
    dev = DeviceResult(kind="cpu", name="Test CPU", line_size_bytes=64, clock_ghz=3.0,
                       declared={"data_caches": [{"level": 1, "size_bytes": 32768}]})
    dev.levels = [Level("L1", 32768, 1.3, 3.9, {"read": {"threads_1": 100.0, "threads_all": 190.0}}),
                  Level("memory", None, 90.0, 270.0)]
    dev.curves = [Curve("latency_hugepage", "latency", "size_bytes", "ns",
                        [CurvePoint(4096.0, [1.3, 1.31]), CurvePoint(8192.0, [1.3])], {"page_kind": "huge"})]
    return ScanResult(host="h", started_at="2026-01-01T00:00:00+00:00", complete=True,
                      devices={"cpu": dev}, training={"points": [{"width": 64}]})


def test_round_trip():
    r = sample()
    assert ScanResult.from_json(r.to_json()) == r
    d = json.loads(r.to_json())
    assert d["schema"] == SCHEMA and d["complete"] is True
    lv = d["cpu"]["levels"][0]
    assert set(lv) >= {"name", "size_bytes", "latency_ns", "latency_cycles", "bandwidth_gbs"}
    assert d["cpu"]["levels"][-1]["size_bytes"] is None and "points" in d["training"]


def test_nan_becomes_null():
    r = sample()
    r.devices["cpu"].clock_ghz = math.nan
    assert json.loads(r.to_json())["cpu"]["clock_ghz"] is None


@pytest.mark.parametrize("text", ["[]", '{"schema": "memprobe/0"}', '{"schema": "memprobe/1"}', "nope"])
def test_schema_errors(text):
    with pytest.raises(SchemaError):
        ScanResult.from_json(text)


def test_csv_has_every_point():
    rows = sample().curves_csv().strip().splitlines()
    assert rows[0].startswith("device,curve") and len(rows) == 3


@pytest.mark.parametrize("samples, want", [([3.0], 3.0), ([1.0, 2.0], 1.25), ([5, 1, 4, 2, 3], 2.0),
                                           ([], math.nan)])
def test_low_is_the_lower_quartile(samples, want):
    got = CurvePoint(1.0, [float(v) for v in samples]).low
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


def test_low_ignores_one_disturbed_pass_and_one_lucky_sample():
    # two quiet passes near 10, one pass disturbed (x2) and one lucky sample (a shelf): the
    # minimum takes the lucky one, the median drifts up, the quartile stays with the quiet ones
    quiet = [10.0, 10.2, 10.1, 10.3, 9.9, 10.0, 10.1, 10.2, 10.4]
    p = CurvePoint(1.0, quiet + [20.0, 21.0, 19.0, 20.5, 22.0] + [6.0])
    assert p.best == 6.0
    assert 9.9 <= p.low <= 10.2
