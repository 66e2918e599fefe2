"""The networks memprobe knows by name, listed once (beside stage 4: result -> **train** ->
report): the training study's models (`memprobe train --model`, `memprobe scan
--train-models`) and `memprobe predict`'s built-in SPECs. Every other list of model names (the
CLI's choices, help texts and error messages, the study's families, predict's BUILTINS) is
read from MODELS; tests/test_train_catalog.py fails when a second list appears. Adding a
network is one entry here (and, for the study, its sweep).

A built-in's builder returns `(model, inputs, loss_fn)` as a user's SPEC function does
(`spec.Builder`), with an optional `batch`; it imports PyTorch only when called, so reading
this table needs no PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional


# ---- the built-in networks' builders ------------------------------------------------------------
def _family(spec: Any) -> tuple[Any, Any, Callable[[Any], Any]]:
    from torch.nn import functional as F

    from memprobe.train import torch_families as TF
    from memprobe.train.families import CnnSpec

    model = TF.build(spec)
    x, y = TF.batch(spec)
    if isinstance(spec, CnnSpec):
        return model, x, (lambda out: F.cross_entropy(out, y))
    return model, x, (lambda out: F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)))


def builtin_mlp(batch: int = 64) -> tuple[Any, Any, Callable[[Any], Any]]:
    """784 -> 1024 -> 1024 -> 10 with ReLU, cross-entropy."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    x, y = torch.randn(batch, 784), torch.randint(0, 10, (batch,))
    return model, x, (lambda out: F.cross_entropy(out, y))


def builtin_cnn(batch: int = 16) -> tuple[Any, Any, Callable[[Any], Any]]:
    from memprobe.train.families import CnnSpec

    return _family(CnnSpec(batch, 64, 32))


def builtin_transformer(batch: int = 16) -> tuple[Any, Any, Callable[[Any], Any]]:
    from memprobe.train.families import TransformerSpec

    return _family(TransformerSpec(batch, 128, 128))


def builtin_resnet50(batch: int = 1) -> tuple[Any, Any, Callable[[Any], Any]]:
    from memprobe.train.families import resnet50

    return _family(resnet50(batch))


def builtin_gpt2_small(batch: int = 1) -> tuple[Any, Any, Callable[[Any], Any]]:
    from memprobe.train.families import gpt2_small

    return _family(gpt2_small(batch))


# ---- the table ----------------------------------------------------------------------------------
# which of the training study's sweeps trains a network: "network" is train/sweep.py's MLP
# (NumPy/Numba, or PyTorch with --framework torch: it needs no PyTorch), "family" is
# train/family_sweep.py's (PyTorch only); None: `memprobe predict` only
Study = Optional[Literal["network", "family"]]


@dataclass(frozen=True)
class Network:
    """One network memprobe knows by name."""

    name: str  # as the CLI takes it and as a training point's `model` records it
    label: str  # short, for a legend ("MLP", "CNN")
    title: str  # one line: what it is (the report's heading for the study's family)
    study: Study  # the study's sweep that trains it (above); None: predict only
    builder: Callable[..., tuple]  # predict's built-in SPEC: (model, inputs, loss_fn)


MODELS: tuple[Network, ...] = (
    Network("mlp", "MLP", "MLP: dense layers, ReLU, SGD", "network", builtin_mlp),
    Network("cnn", "CNN", "CNN: ResNet-style bottleneck blocks (1x1-3x3-1x1 convolutions, batch norm, ReLU)",
            "family", builtin_cnn),
    Network("transformer", "transformer",
            "Transformer: GPT-style blocks (layer norm, causal self-attention, GELU MLP)", "family",
            builtin_transformer),
    Network("resnet50", "ResNet-50", "ResNet-50: torchvision's (v1.5) at 224 x 224, ImageNet's 1000 classes",
            None, builtin_resnet50),
    Network("gpt2-small", "GPT-2 small",
            "GPT-2 small: width 768, 12 layers of 12 heads, vocabulary 50257, context 1024, tied head",
            None, builtin_gpt2_small),
)

# the training study's models, in the order the CLI, the tables and the report show them
STUDY_MODELS: tuple[str, ...] = tuple(m.name for m in MODELS if m.study is not None)
# those the family sweep trains in PyTorch (left out, with why, where PyTorch is missing)
FAMILY_MODELS: tuple[str, ...] = tuple(m.name for m in MODELS if m.study == "family")
# what the study runs when no model is named: the sweep that needs no PyTorch
DEFAULT_STUDY_MODELS: tuple[str, ...] = tuple(m.name for m in MODELS if m.study == "network")
# predict's built-in SPECs: every network here
BUILTIN_NAMES: tuple[str, ...] = tuple(m.name for m in MODELS)


def names_text(names: tuple[str, ...], last: str = "and") -> str:
    """'mlp, cnn and transformer' (`last` joins the final two): for help texts and messages."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {last} {names[-1]}"


def parse_study_models(text: str) -> tuple[str, ...]:
    """'mlp,cnn' or 'all' -> the study's models in STUDY_MODELS order; ValueError naming a model
    not known."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    if "all" in names:
        return STUDY_MODELS
    bad = [m for m in names if m not in STUDY_MODELS]
    if bad or not names:
        raise ValueError(f"unknown model {', '.join(bad) or repr(text)} "
                         f"(choose from {', '.join(STUDY_MODELS)} or all)")
    return tuple(m for m in STUDY_MODELS if m in names)
