"""Timers and per-step terms measured through PyTorch (memprobe/train/torch_rates.py): what a
replayed call's timing leaves out, and the optimizer's calls."""

import importlib.util

import pytest

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed (pip install '.[torch]')")


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@needs_torch
def test_a_calls_page_faults_are_taken_out_of_its_time(monkeypatch, one_thread):
    import torch

    from memprobe.train import torch_rates as TR

    x = torch.randn(1 << 12)
    plain = TR.timed_without_faults(lambda: torch.relu(x), reps=2)
    assert plain > 0
    # every counter read 10**6 faults on: at a second per byte, the faults outweigh any call
    counter = iter(range(0, 10**12, 10**6))
    monkeypatch.setattr(TR, "_faults", lambda: next(counter))
    assert TR.timed_without_faults(lambda: torch.relu(x), reps=2, fault_s_per_byte=1.0) == 0.0
    assert TR.timed_cold(lambda: torch.relu(x), torch.empty(1 << 10), reps=2, fault_s_per_byte=1.0) == 0.0
    # no cost per fault: nothing is taken out
    assert TR.timed_without_faults(lambda: torch.relu(x), reps=2, fault_s_per_byte=0.0) > 0


@needs_torch
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_optimizers_calls_split_into_a_fixed_and_a_per_tensor_cost(optimizer, one_thread):
    from memprobe.train import torch_rates as TR

    fixed, per_tensor = TR.measure_update(optimizer, reps=3)
    assert fixed >= 0 and per_tensor > 0
    assert fixed + per_tensor < 1e-2  # tiny tensors: calls, not work
