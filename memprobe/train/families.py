"""The reference network's families beyond the MLP (`model.step_ops`): a ResNet-style CNN and a
GPT-style transformer, each defined once, here, as a spec and the list of ops its forward pass
runs, with FLOPs and bytes by formula (float32). `torch_families.py` builds the same networks in
PyTorch from the same spec, and a test holds the two together: every kernel PyTorch's profiler
records for a forward pass is one of these ops, and the GEMM and convolution FLOPs match.

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

FLOP conventions: a multiply-add is 2 FLOPs (conv: 2 x output elements x in-channels x k^2;
linear and matmul: 2 x M x N x K); an elementwise op counts its own small constant per element,
named once below. Bytes: the float32 tensors an op reads and writes, weights included.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT_BYTES = 4  # float32, as the frameworks train
# FLOPs per element of the elementwise ops (conventions, as model.SOFTMAX_FLOPS_PER_ELEMENT)
NORM_FLOPS = 8  # mean, variance, normalise, scale and shift
GELU_FLOPS = 8  # the tanh form's polynomial and tanh
SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide
LOSS_FLOPS = 5  # log-softmax and the pick of the label
POOL_FLOPS = 9  # a 3x3 max pool: one comparison per window element
INDEX_BYTES = 8  # int64: labels, token ids, a max pool's indices


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


@dataclass(frozen=True)
class FamilyOp:
    """One kernel of the forward pass: what it computes and the tensors it reads and writes."""

    name: str
    kind: str  # "conv" | "linear" | "matmul" | "norm" | "act" | "add" | "softmax" | "mask" | "scale"
    #            | "pool" | "embed" | "copy" | "loss"
    aten: str  # the operator PyTorch records for it (the profiler's top-level event)
    flops: float
    read_bytes: int
    write_bytes: int

    @property
    def bytes(self) -> int:
        return self.read_bytes + self.write_bytes

    @property
    def gemm(self) -> bool:
        return self.kind in ("conv", "linear", "matmul")


def _elementwise(name: str, kind: str, aten: str, n: int, flops_per: float, inputs: int = 1) -> FamilyOp:
    return FamilyOp(name, kind, aten, flops_per * n, inputs * n * FLOAT_BYTES, n * FLOAT_BYTES)


def out_size(hw: int, stride: int) -> int:
    """A convolution's or pool's output side at padding k // 2 (odd k): ceil(hw / stride)."""
    return (hw - 1) // stride + 1


def _conv(name: str, b: int, cin: int, cout: int, hw: int, k: int, stride: int = 1) -> FamilyOp:
    ho = out_size(hw, stride)
    out = b * cout * ho * ho
    return FamilyOp(name, "conv", "aten::conv2d", 2.0 * out * cin * k * k,
                    (b * cin * hw * hw + cout * cin * k * k) * FLOAT_BYTES, out * FLOAT_BYTES)


def _linear(name: str, rows: int, d_in: int, d_out: int, bias: bool = True) -> FamilyOp:
    return FamilyOp(name, "linear", "aten::linear", 2.0 * rows * d_in * d_out + (rows * d_out if bias else 0),
                    (rows * d_in + d_in * d_out + (d_out if bias else 0)) * FLOAT_BYTES, rows * d_out * FLOAT_BYTES)


def _batch_norm(name: str, n: int) -> list[FamilyOp]:
    """Batch norm in training: its step counter (`num_batches_tracked += 1`, one element) and
    the normalisation."""
    return [FamilyOp(f"{name}.count", "add", "aten::add_", 1.0, 8, 8),
            _elementwise(name, "norm", "aten::batch_norm", n, NORM_FLOPS)]


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


def resnet_ops(s: ResNetSpec) -> list[FamilyOp]:
    """The ResNet's forward pass, in order (the shortcut's projection after the main path, as
    torchvision runs it)."""
    b, r, c0 = s.batch, s.resolution, s.stem_channels
    r2 = out_size(r, 2)
    r4 = out_size(r2, 2)
    n0 = b * c0 * r2 * r2
    npool = b * c0 * r4 * r4
    ops = [_conv("stem.conv", b, s.in_channels, c0, r, 7, 2), *_batch_norm("stem.bn", n0),
           _elementwise("stem.relu", "act", "aten::relu", n0, 1),
           FamilyOp("stem.pool", "pool", "aten::max_pool2d", float(POOL_FLOPS * npool), n0 * FLOAT_BYTES,
                    npool * (FLOAT_BYTES + INDEX_BYTES))]
    for name, cin, q, cout, hw, stride in resnet_blocks(s):
        ho = out_size(hw, stride)
        nin, nq, nout = b * q * hw * hw, b * q * ho * ho, b * cout * ho * ho
        ops += [_conv(f"{name}.conv1", b, cin, q, hw, 1), *_batch_norm(f"{name}.bn1", nin),
                _elementwise(f"{name}.relu1", "act", "aten::relu", nin, 1),
                _conv(f"{name}.conv2", b, q, q, hw, 3, stride), *_batch_norm(f"{name}.bn2", nq),
                _elementwise(f"{name}.relu2", "act", "aten::relu", nq, 1),
                _conv(f"{name}.conv3", b, q, cout, ho, 1), *_batch_norm(f"{name}.bn3", nout)]
        if stride != 1 or cin != cout:
            ops += [_conv(f"{name}.down", b, cin, cout, hw, 1, stride), *_batch_norm(f"{name}.down_bn", nout)]
        ops += [_elementwise(f"{name}.residual", "add", "aten::add", nout, 1, inputs=2),
                _elementwise(f"{name}.relu3", "act", "aten::relu", nout, 1)]
    *_, hw, stride = resnet_blocks(s)[-1]
    c, hw_last = s.widths[-1], out_size(hw, stride)
    n = b * c * hw_last * hw_last
    ops += [FamilyOp("pool", "pool", "aten::mean", float(n), n * FLOAT_BYTES, b * c * FLOAT_BYTES),
            _linear("head", b, c, s.classes),
            _elementwise("loss", "loss", "aten::cross_entropy_loss", b * s.classes, LOSS_FLOPS)]
    return ops


def cnn_ops(s: CnnSpec) -> list[FamilyOp]:
    """The CNN's forward pass, in order."""
    if isinstance(s, ResNetSpec):
        return resnet_ops(s)
    b, c, hw, q = s.batch, s.channels, s.resolution, max(1, s.channels // 4)
    n = b * c * hw * hw
    ops = [_conv("stem.conv", b, s.in_channels, c, hw, 3), *_batch_norm("stem.bn", n),
           _elementwise("stem.relu", "act", "aten::relu", n, 1)]
    for i in range(s.blocks):
        p = f"block{i}"
        nq = b * q * hw * hw
        ops += [_conv(f"{p}.reduce", b, c, q, hw, 1), *_batch_norm(f"{p}.bn1", nq),
                _elementwise(f"{p}.relu1", "act", "aten::relu", nq, 1),
                _conv(f"{p}.conv3x3", b, q, q, hw, 3), *_batch_norm(f"{p}.bn2", nq),
                _elementwise(f"{p}.relu2", "act", "aten::relu", nq, 1),
                _conv(f"{p}.expand", b, q, c, hw, 1), *_batch_norm(f"{p}.bn3", n),
                _elementwise(f"{p}.residual", "add", "aten::add", n, 1, inputs=2),
                _elementwise(f"{p}.relu3", "act", "aten::relu", n, 1)]
    ops += [FamilyOp("pool", "pool", "aten::mean", float(n), n * FLOAT_BYTES, b * c * FLOAT_BYTES),
            _linear("head", b, c, s.classes),
            _elementwise("loss", "loss", "aten::cross_entropy_loss", b * s.classes, LOSS_FLOPS)]
    return ops


def transformer_ops(s: TransformerSpec) -> list[FamilyOp]:
    """The transformer's forward pass, in order (attention written out: scores, mask, softmax,
    weighted sum, so that every kernel is one the profiler names)."""
    b, t, d, h = s.batch, s.seq, s.width, s.heads
    rows = b * t
    n = rows * d
    att = b * h * t * t
    ops = [FamilyOp("embed.tokens", "embed", "aten::embedding", 0.0, rows * 8 + n * FLOAT_BYTES, n * FLOAT_BYTES),
           FamilyOp("embed.positions", "embed", "aten::embedding", 0.0, t * 8 + t * d * FLOAT_BYTES, t * d * FLOAT_BYTES),
           _elementwise("embed.add", "add", "aten::add", n, 1, inputs=2)]
    for i in range(s.layers):
        p = f"layer{i}"
        ops += [_elementwise(f"{p}.ln1", "norm", "aten::layer_norm", n, NORM_FLOPS),
                _linear(f"{p}.qkv", rows, d, 3 * d),
                _elementwise(f"{p}.scale_q", "scale", "aten::mul", n, 1),
                FamilyOp(f"{p}.scores", "matmul", "aten::matmul", 2.0 * att * (d // h),
                         2 * n * FLOAT_BYTES, att * FLOAT_BYTES),
                _elementwise(f"{p}.mask", "mask", "aten::masked_fill", att, 1),
                _elementwise(f"{p}.softmax", "softmax", "aten::softmax", att, SOFTMAX_FLOPS),
                FamilyOp(f"{p}.weighted", "matmul", "aten::matmul", 2.0 * att * (d // h),
                         (att + n) * FLOAT_BYTES, n * FLOAT_BYTES),
                _elementwise(f"{p}.merge_heads", "copy", "aten::contiguous", n, 0),
                _linear(f"{p}.proj", rows, d, d),
                _elementwise(f"{p}.residual1", "add", "aten::add", n, 1, inputs=2),
                _elementwise(f"{p}.ln2", "norm", "aten::layer_norm", n, NORM_FLOPS),
                _linear(f"{p}.fc", rows, d, 4 * d),
                _elementwise(f"{p}.gelu", "act", "aten::gelu", 4 * n, GELU_FLOPS),
                _linear(f"{p}.fc_out", rows, 4 * d, d),
                _elementwise(f"{p}.residual2", "add", "aten::add", n, 1, inputs=2)]
    ops += [_elementwise("ln_f", "norm", "aten::layer_norm", n, NORM_FLOPS),
            _linear("head", rows, d, s.vocab, bias=not s.tied),
            _elementwise("loss", "loss", "aten::cross_entropy_loss", rows * s.vocab, LOSS_FLOPS)]
    return ops


def forward_ops(spec: CnnSpec | TransformerSpec) -> list[FamilyOp]:
    return cnn_ops(spec) if isinstance(spec, CnnSpec) else transformer_ops(spec)


def parameters(spec: CnnSpec | TransformerSpec) -> int:
    """Trainable parameters, by formula (the test checks PyTorch's count)."""
    if isinstance(spec, ResNetSpec):
        c0 = spec.stem_channels
        total = spec.in_channels * c0 * 49 + 2 * c0
        for _, cin, q, cout, _, stride in resnet_blocks(spec):
            total += cin * q + q * q * 9 + q * cout + 2 * (2 * q + cout)
            if stride != 1 or cin != cout:
                total += cin * cout + 2 * cout
        return total + spec.widths[-1] * spec.classes + spec.classes
    if isinstance(spec, CnnSpec):
        c, q = spec.channels, max(1, spec.channels // 4)
        stem = spec.in_channels * c * 9 + 2 * c
        block = c * q + 2 * q + q * q * 9 + 2 * q + q * c + 2 * c
        return stem + spec.blocks * block + c * spec.classes + spec.classes
    d, v = spec.width, spec.vocab
    layer = 2 * (2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    head = 0 if spec.tied else d * v + v
    return v * d + spec.positions * d + spec.layers * layer + 2 * d + head


def training_flops(spec: CnnSpec | TransformerSpec) -> float:
    """FLOPs of one training step: the forward pass, and a backward pass that costs each GEMM
    and convolution twice again (the gradients of its input and of its weights) and each other
    op about once more (the usual 3x rule for the GEMMs)."""
    ops = forward_ops(spec)
    return sum(3 * o.flops if o.gemm else 2 * o.flops for o in ops)


def working_set_bytes(spec: CnnSpec | TransformerSpec, optimizer_states: int = 1) -> int:
    """What a training step touches: every activation the forward pass writes (kept for the
    backward pass), the weights, their gradients and the optimizer's states per weight (SGD with
    momentum 1, AdamW 2)."""
    ops = forward_ops(spec)
    return sum(o.write_bytes for o in ops) + (2 + optimizer_states) * parameters(spec) * FLOAT_BYTES
