"""The families' prediction inputs measured through PyTorch (memprobe/train/torch_rates.py):
the shape a lone op's rate is measured at, and what its timing leaves out."""

import importlib.util

import pytest

from memprobe.train import family_model as FM

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed (pip install '.[torch]')")


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_cut_fits_the_budget_and_keeps_a_weight_heavy_gemm_whole_enough():
    from memprobe.train import torch_rates as TR

    op = FM.LoneOp("relu", (1 << 20,))
    cut = TR.cache_batch(op, 64 << 10)
    assert cut.batch < op.batch and FM.forward_bytes(cut) <= 64 << 10
    # a linear layer whose weights alone overflow the budget keeps MIN_GEMM_ROWS rows
    lin = FM.LoneOp("linear", (4096, 1024, 1024, 1))
    assert TR.cache_batch(lin, 1 << 20).batch == TR.MIN_GEMM_ROWS
    assert TR.cache_batch(op, 1 << 30) == op  # fits: not cut


@needs_torch
def test_a_cut_that_changes_pytorchs_kernel_is_grown_back(one_thread):
    """On one thread PyTorch runs a 1x1 convolution on its native GEMM path below batch 16 and
    on oneDNN from 16: the rate must come from the kernel the step runs."""
    from memprobe.train import torch_rates as TR

    op = FM.LoneOp("conv", (16, 64, 16, 16, 1, 1))
    budget = FM.forward_bytes(op.with_batch(4))
    assert TR.cache_batch(op, budget).batch < 16
    assert TR.dispatch_kernels(op.with_batch(8)) != TR.dispatch_kernels(op)  # the premise
    shape = TR.rate_shape(op, budget)
    assert shape.batch >= 16 and TR.dispatch_kernels(shape) == TR.dispatch_kernels(op)
    # an op whose kernel does not depend on the cut keeps the cut
    relu = FM.LoneOp("relu", (1 << 20,))
    assert TR.rate_shape(relu, 64 << 10) == TR.cache_batch(relu, 64 << 10)


@needs_torch
def test_dispatch_kernels_names_the_algorithm_and_prints_nothing(one_thread, capfd):
    from memprobe.train import torch_rates as TR

    names = TR.dispatch_kernels(FM.LoneOp("conv", (16, 64, 16, 16, 1, 1)))
    assert "aten::mkldnn_convolution" in names
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@needs_torch
def test_a_lone_ops_page_faults_are_taken_out_of_its_time(monkeypatch, one_thread):
    from memprobe.train import torch_rates as TR

    op = FM.LoneOp("relu", (1 << 12,))
    plain_f, plain_b = TR.time_lone(op, reps=2)
    assert plain_f > 0 and plain_b > 0
    # every counter read 10**6 faults on: at a second per byte, the faults outweigh any call
    counter = iter(range(0, 10**12, 10**6))
    monkeypatch.setattr(TR, "_faults", lambda: next(counter))
    assert TR.time_lone(op, reps=2, fault_s_per_byte=1.0) == (0.0, 0.0)
    # no cost per fault: nothing is taken out
    got_f, _ = TR.time_lone(op, reps=2, fault_s_per_byte=0.0)
    assert got_f > 0
