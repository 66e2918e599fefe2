"""The reference network's families beyond the MLP: a ResNet-style CNN and a GPT-style
transformer, each defined once, here, as a spec (its sizes). `torch_families.py` builds the
network of a spec in PyTorch; what a step of it runs, and its working set, come from capturing
that step (`capture.capture_step`), never from a formula.

- `cnn`: a 3x3 stem convolution, then bottleneck blocks (1x1 reduce to a quarter of the
  channels, 3x3, 1x1 expand, each followed by batch norm, a residual add and ReLU), global
  average pooling and a linear classifier, on images of `resolution` x `resolution`.
- `cnn` at full size (`ResNetSpec`, `resnet50`): torchvision's ResNet-50 (v1.5, the stride on
  the bottleneck's 3x3): a 7x7/2 stem convolution, batch norm, ReLU and a 3x3/2 max pool, then
  stages of bottleneck blocks (3, 4, 6, 3 blocks; widths 256, 512, 1024, 2048, the bottleneck at
  a quarter), each stage's first block projecting its shortcut (1x1 convolution and batch norm)
  and, from the second stage on, halving the resolution.
- `transformer`: token embedding plus position embedding, `layers` GPT blocks (layer norm,
  causal self-attention with `heads` heads, residual; layer norm, an MLP of 4x the width with
  GELU, residual), a final layer norm and the vocabulary head, on sequences of `seq` tokens;
  with `tied`, the head is the token embedding's weight (no bias), as GPT-2's (`gpt2_small`).
"""

from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class CnnSpec:
    batch: int
    channels: int  # the blocks' width (the bottleneck runs at a quarter of it)
    resolution: int
    blocks: int = 2
    in_channels: int = 3
    classes: int = 10

    @property
    def model(self) -> str:
        return "cnn"


@dataclass(frozen=True)
class ResNetSpec(CnnSpec):
    """A torchvision-style ResNet (module docstring). CnnSpec's `channels` and `blocks` are the
    last stage's width and the number of blocks, so code that reads them sees the same network."""

    stem_channels: int = 64
    stages: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (256, 512, 1024, 2048)


def resnet50(batch: int, resolution: int = 224, classes: int = 1000) -> ResNetSpec:
    """ResNet-50 (25.6 M parameters at 1000 classes)."""
    return ResNetSpec(batch, channels=2048, resolution=resolution, blocks=16, classes=classes)


@dataclass(frozen=True)
class TransformerSpec:
    batch: int
    seq: int
    width: int
    heads: int = 4
    layers: int = 2
    vocab: int = 256
    tied: bool = False  # the head is the token embedding's weight, without a bias (GPT-2)
    context: int = 0  # rows of the position table (0: seq); a sequence may be shorter

    @property
    def model(self) -> str:
        return "transformer"

    @property
    def positions(self) -> int:
        return self.context or self.seq


def gpt2_small(batch: int, seq: int = 1024) -> TransformerSpec:
    """GPT-2 small: width 768, 12 layers of 12 heads, vocabulary 50257, context 1024, tied head."""
    return TransformerSpec(batch, seq, 768, heads=12, layers=12, vocab=50257, tied=True, context=1024)


def out_size(hw: int, stride: int) -> int:
    """A convolution's or pool's output side at padding k // 2 (odd k): ceil(hw / stride)."""
    return (hw - 1) // stride + 1


def resnet_blocks(s: ResNetSpec) -> list[tuple[str, int, int, int, int, int]]:
    """(name, in width, bottleneck width, out width, input side, stride) of each block."""
    hw, c = out_size(out_size(s.resolution, 2), 2), s.stem_channels
    out = []
    for si, (n, w) in enumerate(zip(s.stages, s.widths)):
        for j in range(n):
            stride = 2 if si > 0 and j == 0 else 1
            out.append((f"stage{si + 1}.{j}", c, max(1, w // 4), w, hw, stride))
            hw, c = out_size(hw, stride), w
    return out
