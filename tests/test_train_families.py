"""The CNN and transformer families (memprobe/train/families.py): op lists by formula, and the
same networks in PyTorch (torch_families.py) held to them by PyTorch's own profiler."""

import importlib.util

import pytest

from memprobe.train.families import (CnnSpec, TransformerSpec, cnn_ops, forward_ops, parameters, training_flops,
                                     transformer_ops, working_set_bytes)

CNN = CnnSpec(batch=4, channels=32, resolution=16, blocks=2)
GPT = TransformerSpec(batch=2, seq=32, width=64, heads=4, layers=2)


def test_convolution_and_attention_flops_by_formula():
    conv = next(o for o in cnn_ops(CNN) if o.name == "block0.conv3x3")
    assert conv.flops == 2 * 4 * 8 * 16 * 16 * 8 * 9  # 2 x outputs x in-channels x 3 x 3
    scores = next(o for o in transformer_ops(GPT) if o.name == "layer0.scores")
    assert scores.flops == 2 * 2 * 4 * 32 * 32 * 16  # 2 x heads' T x T scores x head width
    longer = TransformerSpec(batch=2, seq=64, width=64, heads=4, layers=2)
    grow = next(o for o in transformer_ops(longer) if o.name == "layer0.scores").flops / scores.flops
    assert grow == 4  # attention is quadratic in the sequence


def test_training_step_and_working_set_grow_with_the_batch():
    for small, big in ((CNN, CnnSpec(batch=16, channels=32, resolution=16)),
                       (GPT, TransformerSpec(batch=8, seq=32, width=64, heads=4, layers=2))):
        assert training_flops(big) > 3 * training_flops(small)
        assert working_set_bytes(big) > working_set_bytes(small) > parameters(small) * 4
        assert all(o.bytes > 0 for o in forward_ops(small))


needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="the cnn and transformer families need PyTorch (pip install 'memprobe[torch]')")


@needs_torch
@pytest.mark.parametrize("spec", [CNN, GPT], ids=["cnn", "transformer"])
def test_the_op_list_is_what_pytorch_runs(spec):
    """Every kernel the profiler records for a forward pass and its loss is an op of the list, in
    order, and the GEMM and convolution FLOPs it counts are the list's within 2 %."""
    from memprobe.train.torch_families import profile_forward

    names, flops = profile_forward(spec)
    ops = forward_ops(spec)
    assert names == [o.aten for o in ops]
    assert flops == pytest.approx(sum(o.flops for o in ops if o.gemm), rel=0.02)


@needs_torch
@pytest.mark.parametrize("spec", [CNN, GPT], ids=["cnn", "transformer"])
def test_parameters_by_formula(spec):
    from memprobe.train.torch_families import build

    assert sum(p.numel() for p in build(spec).parameters()) == parameters(spec)


@needs_torch
@pytest.mark.parametrize("spec", [CNN, GPT], ids=["cnn", "transformer"])
def test_training_makes_the_loss_fall(spec):
    from memprobe.train.torch_families import train_steps

    losses = train_steps(spec, 15)
    assert losses[-1] < 0.6 * losses[0], losses


def test_without_torch_the_families_say_why_in_one_line(monkeypatch):
    import builtins

    from memprobe.train.torch_families import torch_missing

    real = builtins.__import__

    def no_torch(name, *a, **k):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    why = torch_missing()
    assert why and "\n" not in why and "memprobe[torch]" in why
