"""`memprobe predict`: the CLI's side (the library's is tests/test_train_spec.py): one line and
exit 2 or 3 on bad input, --json with the fields the interface promises, --out's page."""

import json
import statistics
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="memprobe predict needs PyTorch (pip install '.[torch]')")

from memprobe import cli  # noqa: E402

SCAN = Path(__file__).parent / "data" / "scan_small.json"
NET = '''
import torch

def make(batch=4):
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    x = torch.randn(batch, 16)
    y = torch.randint(0, 4, (batch,))
    return model, x, lambda out: torch.nn.functional.cross_entropy(out, y)

def broken(batch=4):
    raise RuntimeError("the user's own bug")

def wrong():
    return 42
'''


@pytest.fixture
def net(tmp_path):
    p = tmp_path / "net.py"
    p.write_text(NET)
    return p


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_has_the_promised_fields(net, tmp_path, capsys):
    code, out, err = run(["predict", f"{net}:make", "--scan", str(SCAN), "--batch", "8", "--json", "--measure",
                          "--jsonl", str(tmp_path / "records.jsonl"), "--out", str(tmp_path / "page")], capsys)
    assert code == 0, err
    d = json.loads(out)
    for key in ("model", "batch", "threads", "predicted_s", "measured_s", "coverage", "ops", "unmodelled"):
        assert key in d
    assert d["batch"] == 8 and d["predicted_s"] > 0 and d["measured_s"] > 0 and 0 < d["coverage"] <= 1
    assert any(g["op"].startswith("aten.mm") or g["op"].startswith("aten.addmm") for g in d["ops"])
    # every timed step is kept, and the figure is their median: how far one measurement reads
    assert len(d["measured_samples_s"]) == 5 and d["measured_s"] == statistics.median(d["measured_samples_s"])
    record = json.loads((tmp_path / "records.jsonl").read_text().splitlines()[0])
    assert record["model"] == d["model"] and record["measured_s"] == d["measured_s"] and record["torch"]
    assert record["measured_samples_s"] == d["measured_samples_s"]
    page = (tmp_path / "page" / "predict.html").read_text()
    assert "Where the step's time goes" in page and "<svg" in page and "aten.addmm" in page
    assert "the median of 5 steps" in page


@pytest.mark.parametrize("spec, code, words", [
    ("{dir}/missing.py:make", 2, "missing.py"),
    ("{net}:nothing_here", 2, "nothing_here"),
    ("{net}:broken", 3, "the user's own bug"),
    ("{net}:wrong", 2, "return"),
])
def test_bad_specs_get_one_line_and_their_exit_code(net, tmp_path, capsys, spec, code, words):
    got, out, err = run(["predict", spec.format(dir=tmp_path, net=net), "--scan", str(SCAN)], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("memprobe:") and "capture" not in ln]
    assert got == code and words in err and "Traceback" not in err and len(lines) == 1, err


RATES = Path(__file__).parent / "data" / "scan_rates.json"


def test_predict_on_a_scan_with_its_rate_table_needs_nothing_measured_here(net, capsys, monkeypatch):
    from memprobe.train import op_rates

    def no_replay(*a, **k):
        raise AssertionError("predict --on must not measure an op here")

    monkeypatch.setattr(op_rates, "measure_op", no_replay)
    code, out, err = run(["predict", f"{net}:make", "--on", str(RATES), "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["predicted_s"] > 0 and not d["partial"] and d["missing"] == []


def test_predict_here_and_there_side_by_side(net, capsys):
    code, out, err = run(["predict", f"{net}:make", "--scan", str(RATES), "--on", str(RATES)], capsys)
    assert code == 0, err
    assert "there / here 1.00x" in out  # the same machine twice: the same step


def test_a_scan_without_a_rate_table_gives_a_partial_prediction_and_exit_5(net, capsys):
    code, out, err = run(["predict", f"{net}:make", "--on", str(SCAN)], capsys)
    assert code == cli.EXIT_INCOMPLETE and "partial prediction" in err and "re-run `memprobe scan`" in err


@pytest.mark.parametrize("text, words", [
    ("{not json", "JSON"),
    ('{"schema": "memprobe/9"}', "newer memprobe"),
])
def test_bad_on_scans_get_one_line_and_exit_2(net, tmp_path, capsys, text, words):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    code, out, err = run(["predict", f"{net}:make", "--on", str(bad)], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_compare_predict_puts_the_step_on_both_machines_in_the_page(net, tmp_path, capsys):
    out_page = tmp_path / "cmp.html"
    code, out, err = run(["compare", str(RATES), str(SCAN), "--predict", f"{net}:make", "--out", str(out_page)],
                         capsys)
    assert code == 0, err
    page = out_page.read_text()
    assert "one training step on each machine" in page and "Partial (a lower bound)" in page


def test_fresh_measures_every_rate_instead_of_reading_the_cache(net, capsys, monkeypatch):
    from memprobe.train import spec as S

    seen = {}
    real = S.run_predict

    def spy(*a, **k):
        seen["use_cache"] = k.get("use_cache")
        return real(*a, **k)

    monkeypatch.setattr(S, "run_predict", spy)
    assert run(["predict", f"{net}:make", "--scan", str(SCAN), "--fresh", "--json"], capsys)[0] == 0
    assert seen["use_cache"] is False


def test_scan_predict_keeps_the_prediction_in_the_scan_and_its_report(net, tmp_path, capsys, monkeypatch):
    """`scan --predict SPEC`: the step predicted against the scan just made is a typed record in
    scan.json, and the report (re-rendered from the JSON alone) has its section; a GPU scan made
    under the CUDA simulator renders the same section."""
    import memprobe.scan as scan_mod
    from memprobe.report.html import render_html
    from memprobe.result import ScanResult

    saved = ScanResult.load(RATES)

    def fake_scan(options, progress, result):
        result.devices = saved.devices
        result.machine = saved.machine
        result.complete = True
        return result

    monkeypatch.setattr(scan_mod, "run_scan", fake_scan)
    out = tmp_path / "s"
    code, _, err = run(["scan", "--no-train", "--no-progress", "--predict", f"{net}:make", "--out", str(out)], capsys)
    assert code == 0, err
    back = ScanResult.load(out / "scan.json")
    (rec,) = back.predictions
    assert rec.spec == f"{net}:make" and rec.predicted_s > 0 and rec.ops and rec.coverage > 0.9
    page = (out / "report.html").read_text()
    assert "Your network" in page and "aten.addmm" in page and "Your network" in render_html(back)
    gpu = ScanResult.load(Path(__file__).parent / "data" / "scan_gpu.json")
    gpu.predictions.append(rec)
    assert "Your network" in render_html(gpu)


def test_scan_predict_with_a_bad_spec_keeps_the_scan_and_exits_with_the_specs_code(tmp_path, capsys, monkeypatch):
    import memprobe.scan as scan_mod

    monkeypatch.setattr(scan_mod, "run_scan", lambda o, p, r: setattr(r, "complete", True) or r)
    out = tmp_path / "s"
    code, _, err = run(["scan", "--no-train", "--no-progress", "--predict", str(tmp_path / "none.py:f"),
                        "--out", str(out)], capsys)
    assert code == 2 and (out / "scan.json").exists() and "--predict" in err and "Traceback" not in err
