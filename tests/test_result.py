"""The versioned result round-trips through JSON; memprobe/1 files still load; every scan the
tests write validates against the shipped JSON Schema; bad documents are SchemaErrors."""

import json
import math
from pathlib import Path

import pytest

from memprobe.result import (SCHEMA, SCHEMA_FILE, Code, Curve, CurvePoint, Declared, DeclaredCache, DeviceResult,
                             Level, ScanResult, SchemaError, TrainingPoint, TrainingStudy, json_schema)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def sample() -> ScanResult:
    dev = DeviceResult(kind="cpu", name="Test CPU", line_size_bytes=64, clock_ghz=3.0,
                       declared=Declared(caches=[DeclaredCache(1, "Data", 32768)]))
    dev.levels = [Level("L1", 32768, 1.3, 3.9, {"read": {"threads_1": 100.0, "threads_all": 190.0}}),
                  Level("memory", None, 90.0, 270.0)]
    dev.levels[0].note(Code.UNSTABLE, "unstable: points on this plateau spread 30%")
    dev.warn(Code.STEAL, "the host took CPU time", "latency")
    dev.curves = [Curve("latency_hugepage", "latency", "size_bytes", "ns",
                        [CurvePoint(4096.0, [1.3, 1.31]), CurvePoint(8192.0, [1.3])], {"page_kind": "huge"})]
    point = TrainingPoint(device="cpu", level="L1", width=64, layers=3, batch=16, threads="threads_1",
                          n_threads=1, working_set_bytes=50_000, flops=1e6, bytes=2e5, measured_s=1e-4,
                          predicted_s=1.1e-4, error=0.1)
    return ScanResult(host="h", started_at="2026-01-01T00:00:00+00:00", complete=True,
                      devices={"cpu": dev}, training=TrainingStudy(points=[point]))


def validator():
    jsonschema = pytest.importorskip("jsonschema", reason="the test extra's jsonschema validates scan.json")
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def test_round_trip():
    r = sample()
    assert ScanResult.from_json(r.to_json()) == r
    d = json.loads(r.to_json())
    assert d["schema"] == SCHEMA and d["complete"] is True
    lv = d["cpu"]["levels"][0]
    assert set(lv) >= {"name", "size_bytes", "size_interval_bytes", "edge", "latency_ns", "latency_cycles",
                       "bandwidth_gbs"}
    assert lv["notes"] == [{"code": "unstable", "text": "unstable: points on this plateau spread 30%"}]
    assert d["cpu"]["warnings"][0] == {"code": "steal", "text": "the host took CPU time", "stage": "latency"}
    assert d["cpu"]["levels"][-1]["size_bytes"] is None and d["training"]["points"][0]["model"] == "mlp"


def test_nan_becomes_null():
    r = sample()
    r.devices["cpu"].clock_ghz = math.nan
    assert json.loads(r.to_json())["cpu"]["clock_ghz"] is None


@pytest.mark.parametrize("text", ["[]", '{"schema": "memprobe/0"}', '{"schema": "memprobe/1"}',
                                  '{"schema": "memprobe/2"}', "nope"])
def test_schema_errors(text):
    with pytest.raises(SchemaError):
        ScanResult.from_json(text)


def test_wrong_types_are_schema_errors_naming_the_field():
    d = json.loads(sample().to_json())
    d["cpu"]["levels"][0]["size_bytes"] = "big"
    with pytest.raises(SchemaError, match=r"levels\.0\.size_bytes"):
        ScanResult.from_dict(d)
    d = json.loads(sample().to_json())
    d["cpu"]["warnings"][0]["code"] = "made-up"
    with pytest.raises(SchemaError, match="code"):
        ScanResult.from_dict(d)


def test_shipped_json_schema_is_the_generated_one():
    """The file in the package is what the types generate (re-make it with
    `python3 -m memprobe.schema` after changing a record)."""
    current = json.loads(SCHEMA_FILE.read_text()) == json_schema()
    assert current, f"{SCHEMA_FILE.name} is out of date with the result's types: run python3 -m memprobe.schema"


def test_scans_validate_against_the_schema():
    v = validator()
    v.validate(json.loads(sample().to_json()))
    for name in ("scan_small.json", "scan_gpu.json", "scan_incomplete.json"):
        v.validate(json.loads((DATA / name).read_text()))
    bad = json.loads(sample().to_json())
    bad["cpu"]["levels"][0]["surprise"] = 1
    assert not v.is_valid(bad)


def test_memprobe_1_files_still_load():
    """The example scan committed in memprobe/1 form: read, upgraded, and written as memprobe/2."""
    old = ROOT / "reports" / "examples" / "amd-epyc-zen3-kvm-2vcpu" / "scan.json"
    raw = json.loads(old.read_text())
    if raw.get("schema") != "memprobe/1":
        pytest.skip("the example scan is no longer memprobe/1")
    r = ScanResult.load(old)
    cpu = r.devices["cpu"]
    assert [lv.name for lv in cpu.levels][-1] == "memory" and cpu.levels[0].size_bytes
    assert cpu.declared.data_caches()[0].size_bytes == raw["cpu"]["declared"]["data_caches"][0]["size_bytes"]
    assert cpu.compute.gemm and cpu.compute.fma["float64"]["threads_all"] > 0
    assert len(r.training.points) == len(raw["training"]["points"])
    assert all(n.code == Code.LEGACY for lv in cpu.levels for n in lv.notes)
    again = ScanResult.from_json(r.to_json())
    assert again == r and again.schema == SCHEMA


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


def test_every_property_of_the_schema_says_what_it_is():
    """Units from the names, meaning and statistic from the comments beside the fields."""
    from memprobe.result import json_schema

    s = json_schema()
    props = [(c, k, p) for c, d in s["$defs"].items() for k, p in (d.get("properties") or {}).items()]
    assert len(props) > 300 and all(p.get("description") for _, _, p in props)
    level = s["$defs"]["Level"]["properties"]
    assert "nanoseconds" in level["latency_ns"]["description"] and "lower quartile" in level["latency_ns"]["description"]
    assert "GB/s" in level["bandwidth_gbs"]["description"] and "best sample" in level["bandwidth_gbs"]["description"]


def test_model_inputs_read_the_stored_overhead_dicts_of_saved_scans():
    """The MLP sweep's inputs are stored as they always were (call overheads and, beside them,
    "cross_core_s_per_byte" in one flat dict): every saved scan's read back as the typed record,
    the cross-core figure in its own field, and written back unchanged."""
    from memprobe.result import ModelInputs

    seen = 0
    for name in ("scan_small.json", "scan_gpu.json"):
        scan = ScanResult.load(DATA / name)
        for dev, inputs in scan.training.inputs.items():
            for tkey, stored in (inputs.overhead_s or {}).items():
                m = ModelInputs.from_overhead_dict(stored, 2)
                assert "cross_core_s_per_byte" not in m.call_overhead_s
                assert m.cross_core_s_per_byte == stored["cross_core_s_per_byte"] > 0
                assert m.overhead_dict() == stored and list(m.overhead_dict()) == list(stored)
                seen += 1
    assert seen >= 2
    gpu = ModelInputs(1, {"gemm": 1e-5, "kernel": 4e-6})  # a GPU's sweep measures no cross-core figure
    assert gpu.overhead_dict() == {"gemm": 1e-5, "kernel": 4e-6} and gpu.cross_core_or_zero_s_per_byte == 0.0
    assert ModelInputs.from_overhead_dict(gpu.overhead_dict(), 1) == gpu
    with pytest.raises(TypeError):
        ModelInputs.from_overhead_dict(None)


def test_a_familys_inputs_read_back_typed_from_every_stored_form():
    """The family sweeps' inputs, kept by older scans under `training.inputs` beside the MLP's
    ("cpu/cnn"), in the op-list form (flat call overheads) or the captured form (flat per-step
    terms), read back as typed records under `family_inputs`; the MLP's stay where they were."""
    import dataclasses

    from memprobe.result import FamilyInputs, ModelInputs, PointInputs, ReplayedOp
    from memprobe.train.op_rates import OpRate

    scan = json.loads(ScanResult.load(DATA / "scan_small.json").to_json())
    mlp = scan["training"]["inputs"]
    op_list = {"spec": {"batch": 16}, "overhead_s": {"fwd|conv": 2e-6}, "backward_call_s": 1e-5,
               "update_fixed_s": 3e-5, "update_gflops": 4.0, "fault_s_per_byte": 1e-10, "in_step_overhead_factor": 1.7}
    captured = {"spec": {"batch": 1}, "method": "captured", "kernels": 40, "distinct_ops": 20, "capture_s": 0.2,
                "fault_s_per_byte": 1e-10, "backward_call_s": 1e-5, "cross_core_s_per_byte": 0.0,
                "update_call_s": [1e-5, 2e-6], "fault_bytes": 0, "in_step_call_scale": 1.3, "coverage": 1.0,
                "unmodelled": []}
    rate = {"key": "k", "op": "aten.mm.default", "call_s": 1e-4, "overhead_s": 2e-6, "work": 1e6, "bytes": 4096,
            "threads": 1}
    scan["training"]["inputs"] = {**mlp, "cpu/cnn": {"threads_1": {"per_point": [op_list], "lone_ops": [{}]}},
                                  "cpu/transformer": {"threads_1": {"per_point": [captured], "op_rates": [rate]}}}
    back = ScanResult.from_dict(scan)
    assert set(back.training.inputs) == set(mlp)
    cnn = back.training.family_inputs["cpu/cnn"]["threads_1"]
    assert isinstance(cnn, FamilyInputs) and isinstance(cnn.per_point[0], PointInputs)
    assert cnn.per_point[0].machine.call_overhead_s == {"fwd|conv": 2e-6} and cnn.per_point[0].in_step_call_scale == 1.7
    tr = back.training.family_inputs["cpu/transformer"]["threads_1"]
    assert tr.per_point[0].machine == ModelInputs(backward_call_s=1e-5, fault_s_per_byte=1e-10,
                                                  cross_core_s_per_byte=0.0, update_call_s=(1e-5, 2e-6))
    assert tr.op_rates == [ReplayedOp(**rate)]
    again = ScanResult.from_json(back.to_json())
    assert again.training == back.training
    # the stored rate is the predictor's record, field for field
    assert [f.name for f in dataclasses.fields(ReplayedOp)] == [f.name for f in dataclasses.fields(OpRate)]
