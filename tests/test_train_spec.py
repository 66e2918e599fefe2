"""`memprobe predict`'s library side (memprobe/train/spec.py): loading a SPEC, the one typed
error for every bad input, and one prediction end to end on a tiny network."""

import json
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[torch]')")

from memprobe.result import ScanResult  # noqa: E402
from memprobe.train import spec as S  # noqa: E402

SCAN = Path(__file__).parent / "data" / "scan_small.json"

GOOD = """
import torch

def build(batch=4):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    x = torch.randn(batch, 16)
    y = torch.randint(0, 4, (batch,))
    return m, x, (lambda out: torch.nn.functional.cross_entropy(out, y))

def no_batch():
    return build(2)

class Out:
    def __init__(self, loss):
        self.loss = loss

class HF(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)
    def forward(self, input_ids=None, scale=1.0):
        return Out((self.lin(input_ids) * scale).square().mean())

def hf_style(batch=3):
    return HF(), {"input_ids": torch.randn(batch, 8), "scale": 0.5}

def no_loss():
    return torch.nn.Linear(4, 4), torch.randn(2, 4)

def raises(batch=1):
    raise RuntimeError("the user's own bug")

def one_thing():
    return torch.nn.Linear(4, 4)

def bad_forward():
    return torch.nn.Linear(4, 4), torch.randn(2, 5), (lambda out: out.sum())

not_callable = 3
"""


@pytest.fixture
def specfile(tmp_path):
    p = tmp_path / "nets.py"
    p.write_text(textwrap.dedent(GOOD))
    return p


@pytest.mark.parametrize("name,code,match", [
    ("missing.py:build", 2, "no file"),
    ("{f}:nothing", 2, "has no nothing"),
    ("{f}:not_callable", 2, "not a function"),
    ("{f}", 2, "expected"),
    ("no_such_pkg_xyz.mod:build", 2, "no module"),
])
def test_a_spec_that_names_nothing_is_one_typed_error(specfile, tmp_path, monkeypatch, name, code, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(S.SpecError, match=match) as e:
        S.load_spec(name.format(f=specfile))
    assert e.value.exit_code == code and "\n" not in str(e.value)


@pytest.mark.parametrize("fn,code,match", [
    ("raises", 3, "raised RuntimeError: the user's own bug"),
    ("one_thing", 2, r"must return \(model, inputs\)"),
    ("no_loss", 2, "loss_fn"),
    ("bad_forward", 3, "the training step failed"),
])
def test_a_spec_whose_code_fails_is_one_typed_error(specfile, fn, code, match):
    b = S.load_spec(f"{specfile}:{fn}")
    with pytest.raises(S.SpecError, match=match) as e:
        S.capture_spec(b, None, "sgd")
    assert e.value.exit_code == code and "\n" not in str(e.value)


def test_batch_is_passed_where_the_function_takes_it(specfile):
    g = S.capture_spec(S.load_spec(f"{specfile}:build"), 7, "adamw")
    assert g.batch == 7
    with pytest.raises(S.SpecError, match="takes no batch"):
        S.capture_spec(S.load_spec(f"{specfile}:no_batch"), 7, "sgd")
    assert S.capture_spec(S.load_spec(f"{specfile}:no_batch"), None, "sgd").batch == 2


def test_a_dict_of_inputs_and_a_hugging_face_style_loss(specfile):
    g = S.capture_spec(S.load_spec(f"{specfile}:hf_style"), None, "sgd")
    assert g.counts()["aten.addmm.default"] == 1 and g.batch == 3


def test_a_module_path_and_the_builtins_load():
    b = S.load_spec("memprobe.train.catalog:builtin_mlp")
    assert b.takes_batch
    assert set(S.BUILTINS) == {"mlp", "cnn", "transformer", "resnet50", "gpt2-small"}
    g = S.capture_spec(S.load_spec("transformer"), 2, "adamw")  # torch_families' transformer, under fake tensors
    assert g.counts()["aten.bmm.default"] > 0


def test_the_step_too_large_for_memory_is_refused_before_it_runs(specfile):
    scan = ScanResult.load(SCAN)
    with pytest.raises(S.SpecError, match="too large") as e:
        S.run_predict(f"{specfile}:build", scan, measure=True, free_bytes=1000, use_cache=False)
    assert e.value.exit_code == 3


def test_run_predict_end_to_end_on_a_tiny_network(specfile):
    scan = ScanResult.load(SCAN)
    seen = []
    r = S.run_predict(f"{specfile}:build", scan, batch=8, threads=1, optimizer="sgd", measure=True,
                      progress=lambda *a: seen.append(a[0]), steps=3, use_cache=False)
    assert r.predicted_s > 0 and r.measured_s > 0 and r.coverage == 1.0 and r.unmodelled == []
    assert r.batch == 8 and r.threads == "threads_1" and r.kernels >= r.distinct_ops > 0
    assert {"capture", "rates", "measure"} <= set(seen)
    d = json.loads(json.dumps(r.to_dict()))
    assert {"model", "batch", "threads", "predicted_s", "measured_s", "coverage", "ops", "unmodelled"} <= set(d)
    # the op groups hold the step but autograd's start per backward call (measured: on a step
    # this small it moved from a few % to a quarter of it between runs on a busy machine)
    assert 0.5 < sum(g["share"] for g in d["ops"]) <= 1.0 + 1e-9
    assert r.flops_peak_s > 0 and r.replay_sum_s > 0
    with pytest.raises(S.SpecError, match="threads"):
        S.run_predict(f"{specfile}:build", scan, threads=3, use_cache=False)
