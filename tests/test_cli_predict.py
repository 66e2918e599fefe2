"""`memprobe predict`: the CLI's side (the library's is tests/test_train_spec.py): one line and
exit 2 or 3 on bad input, --json with the fields the interface promises, --out's page."""

import json
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
    code, out, err = run(["predict", f"{net}:make", "--scan", str(SCAN), "--batch", "8", "--json",
                          "--jsonl", str(tmp_path / "records.jsonl"), "--out", str(tmp_path / "page")], capsys)
    assert code == 0, err
    d = json.loads(out)
    for key in ("model", "batch", "threads", "predicted_s", "measured_s", "coverage", "ops", "unmodelled"):
        assert key in d
    assert d["batch"] == 8 and d["predicted_s"] > 0 and d["measured_s"] is None and 0 < d["coverage"] <= 1
    assert any(g["op"].startswith("aten.mm") or g["op"].startswith("aten.addmm") for g in d["ops"])
    assert json.loads((tmp_path / "records.jsonl").read_text().splitlines()[0])["model"] == d["model"]
    page = (tmp_path / "page" / "predict.html").read_text()
    assert "Where the step's time goes" in page and "<svg" in page and "aten.addmm" in page


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
