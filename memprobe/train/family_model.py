"""The CNN and transformer families' step prediction (beside stage 4: result -> **train** -> report).

The same op model as the MLP's (`model.py`), on the op list PyTorch runs for one training step:

    predicted_s = sum over ops of max(FLOPs / P(op) + excess(op), sum over operands bytes / BW(level, kernel))
                  + sum over ops of the op's measured call overhead + the step's fixed overheads

    excess(op) = sum over inputs bytes x (1 / BW(level) - 1 / BW(the level P was measured in)), where positive

* Forward: the ops of `families.forward_ops`, each with its operands named (which tensor it reads
  and writes), so that the level of an operand is the smallest level holding its reuse footprint
  (`model.reuse_footprints`, cyclic over steps).
* Backward, with the textbook multipliers: a convolution, linear layer or batched matmul costs
  its forward FLOPs once for the input's gradient and once for the weight's (or the second
  input's), each taken only where a gradient is needed (no input gradient for the images or the
  token ids); it reads the output's gradient and the saved inputs and writes their gradients. An
  elementwise op's backward costs its forward FLOPs once and reads the output's gradient and
  the tensor autograd saved for it (ReLU and softmax their output, norms and GELU their input).
  An addition passes its gradient through (no kernel); where a tensor feeds two ops, their
  gradients are summed (one add); the attention's q, k, v gradients are stacked into one
  (autograd's unbind backward).
* Update: the kernels PyTorch's single-tensor optimizer issues per parameter tensor (SGD with
  momentum: 3; AdamW: 9), each reading and writing whole tensors: weights, gradients, states.
* P(op): measured through PyTorch on that op alone (`torch_rates.py`) at the point's shape, its
  batch cut until its operands fit in cache (but not so far that PyTorch picks another kernel),
  with the op's call overhead and page faults taken out; the call overheads measured on the
  same ops at a tiny shape. Nothing here sees a step time.
* excess(op): the rate already paid for its inputs' stream from the level that held them
  while it was measured (`rate_level`); an input the step brings from farther adds the
  difference, on top of the compute (`excess_memory_s`).

Pure: specs and a `model.Ceilings` in, a `model.Prediction` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from memprobe.result import ModelInputs
from memprobe.train import model as M
from memprobe.train.families import (FLOAT_BYTES, CnnSpec, ResNetSpec, TransformerSpec, forward_ops, out_size,
                                     resnet_blocks)

INDEX_BYTES = 8  # int64 labels and token ids
# FLOPs per parameter of one update (conventions: the rate is measured with the same count)
UPDATE_FLOPS = {"sgd": 4.0, "adamw": 12.0}
# The kernels each optimizer's single-tensor path runs per parameter tensor, in order, as
# (PyTorch's operator, the tensors it reads, the one it writes): w weight, g gradient, m and v
# its states, t and u temporaries (new tensors: sqrt's and div's outputs). "" is a scalar (the
# step count, its read back). The update's operands are built from this table, and a test
# holds the table to what torch.profiler records for an optimizer step.
UPDATE_KERNELS = {
    "sgd": (("aten::mul_", "m", "m"), ("aten::add_", "mg", "m"), ("aten::add_", "wm", "w")),
    "adamw": (("aten::add_", "", ""), ("aten::mul_", "w", "w"), ("aten::lerp_", "mg", "m"),
              ("aten::mul_", "v", "v"), ("aten::addcmul_", "vg", "v"), ("aten::item", "", ""),
              ("aten::sqrt", "v", "t"), ("aten::div", "t", "u"), ("aten::add_", "u", "u"),
              ("aten::addcdiv_", "wmu", "w")),
}
# FLOPs per element of the gradient sums and stacks autograd adds (one add; a copy)
SUM_FLOPS, STACK_FLOPS = 1.0, 0.0


@dataclass(frozen=True)
class LoneOp:
    """An op alone, as the rate measurement builds it: the torch call and its dimensions.

    kind: "conv" (batch, c_in, c_out, hw, k, input_grad[, stride]; hw the input's side)
    | "linear" (rows, d_in, d_out, input_grad[, bias]) | "maxpool" (batch, c, hw) (3x3/2)
    | "bmm" (groups, m, k, n) | "batch_norm" (batch, c, hw) | "layer_norm" (rows, d)
    | "relu" / "add" / "mul" / "gelu" (elements,) | "add_bcast" (batch, t, d)
    | "masked_fill" / "softmax" (groups, t) | "contiguous" (batch, heads, t, head_d)
    | "mean" (batch, c, hw) | "embedding" (rows, vocab, d, weight_only) | "cross_entropy" (rows, classes)
    | "count" ()."""

    kind: str
    dims: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}({','.join(map(str, self.dims))})"

    @property
    def batch(self) -> int:
        """The leading dimension the measurement may cut to fit its operands in cache."""
        return self.dims[0] if self.dims else 1

    def with_batch(self, b: int) -> "LoneOp":
        return LoneOp(self.kind, (b, *self.dims[1:])) if self.dims else self


GEMM_KINDS = ("conv", "linear", "bmm")


@dataclass(frozen=True)
class FwdOp:
    """A forward op with its operands named: reads (inputs, then weights) and the output."""

    name: str
    lone: LoneOp
    inputs: tuple[tuple[str, int], ...]  # (buffer, bytes) of activations it reads
    weights: tuple[tuple[str, int], ...]  # parameters it reads (their gradients are written back)
    out: tuple[str, int]
    flops: float
    input_grad: bool = True  # whether the backward pass needs its inputs' gradient

    @property
    def read_bytes(self) -> int:
        return sum(b for _, b in self.inputs) + sum(b for _, b in self.weights)


def param_tensors(spec: CnnSpec | TransformerSpec) -> list[tuple[str, int]]:
    """(name, elements) of every parameter tensor, in the network's order (the update iterates
    them; the test checks PyTorch's list)."""
    if isinstance(spec, ResNetSpec):
        c0 = spec.stem_channels
        out = [("stem.conv.w", c0 * spec.in_channels * 49), ("stem.bn.w", c0), ("stem.bn.b", c0)]
        for p, cin, q, cout, _, stride in resnet_blocks(spec):
            for conv, bn, n_w, ch in (("conv1", "bn1", cin * q, q), ("conv2", "bn2", q * q * 9, q),
                                      ("conv3", "bn3", q * cout, cout)):
                out += [(f"{p}.{conv}.w", n_w), (f"{p}.{bn}.w", ch), (f"{p}.{bn}.b", ch)]
            if stride != 1 or cin != cout:
                out += [(f"{p}.down.w", cin * cout), (f"{p}.down_bn.w", cout), (f"{p}.down_bn.b", cout)]
        return out + [("head.w", spec.classes * spec.widths[-1]), ("head.b", spec.classes)]
    if isinstance(spec, CnnSpec):
        c, q = spec.channels, max(1, spec.channels // 4)
        out = [("stem.conv.w", c * spec.in_channels * 9), ("stem.bn.w", c), ("stem.bn.b", c)]
        for i in range(spec.blocks):
            p = f"block{i}"
            out += [(f"{p}.reduce.w", q * c), (f"{p}.bn1.w", q), (f"{p}.bn1.b", q),
                    (f"{p}.conv3x3.w", q * q * 9), (f"{p}.bn2.w", q), (f"{p}.bn2.b", q),
                    (f"{p}.expand.w", c * q), (f"{p}.bn3.w", c), (f"{p}.bn3.b", c)]
        return out + [("head.w", spec.classes * c), ("head.b", spec.classes)]
    d, v = spec.width, spec.vocab
    out = [("embed.tokens.w", v * d), ("embed.positions.w", spec.positions * d)]
    for i in range(spec.layers):
        p = f"layer{i}"
        out += [(f"{p}.ln1.w", d), (f"{p}.ln1.b", d), (f"{p}.qkv.w", 3 * d * d), (f"{p}.qkv.b", 3 * d),
                (f"{p}.proj.w", d * d), (f"{p}.proj.b", d), (f"{p}.ln2.w", d), (f"{p}.ln2.b", d),
                (f"{p}.fc.w", 4 * d * d), (f"{p}.fc.b", 4 * d), (f"{p}.fc_out.w", 4 * d * d), (f"{p}.fc_out.b", d)]
    return out + [("ln_f.w", d), ("ln_f.b", d)] + ([] if spec.tied else [("head.w", v * d), ("head.b", v)])


def _b(elements: int) -> int:
    return elements * FLOAT_BYTES


def _resnet_forward(s: ResNetSpec) -> list[FwdOp]:
    B, r, c0 = s.batch, s.resolution, s.stem_channels
    fl = {o.name: o.flops for o in forward_ops(s)}
    ops: list[FwdOp] = []

    def conv(name: str, src: str, cin: int, cout: int, hw: int, k: int, stride: int, ig: bool = True) -> int:
        ho = out_size(hw, stride)
        dims = (B, cin, cout, hw, k, int(ig)) + ((stride,) if stride != 1 else ())
        ops.append(FwdOp(name, LoneOp("conv", dims), ((src, _b(B * cin * hw * hw)),),
                         ((f"{name}.w", _b(cout * cin * k * k)),), (f"{name}.out", _b(B * cout * ho * ho)),
                         fl[name], input_grad=ig))
        return ho

    def bn(name: str, src: str, ch: int, hw: int) -> str:
        size = B * ch * hw * hw
        ops.append(FwdOp(f"{name}.count", LoneOp("count", ()), ((f"{name}.count", 8),), (), (f"{name}.count", 8),
                         fl[f"{name}.count"], False))
        ops.append(FwdOp(name, LoneOp("batch_norm", (B, ch, hw)), ((src, _b(size)),), (), (f"{name}.out", _b(size)),
                         fl[name]))
        return f"{name}.out"

    def relu(name: str, src: str, size: int, dst: str | None = None) -> str:
        dst = dst or f"{name}.out"
        ops.append(FwdOp(name, LoneOp("relu", (size,)), ((src, _b(size)),), (), (dst, _b(size)), fl[name]))
        return dst

    r2 = conv("stem.conv", "images", s.in_channels, c0, r, 7, 2, ig=False)
    x = relu("stem.relu", bn("stem.bn", "stem.conv.out", c0, r2), B * c0 * r2 * r2)
    r4 = out_size(r2, 2)
    # the pool's output counted with its int64 indices (written now, read by its backward)
    ops.append(FwdOp("stem.pool", LoneOp("maxpool", (B, c0, r2)), ((x, _b(B * c0 * r2 * r2)),), (),
                     ("h0", B * c0 * r4 * r4 * (FLOAT_BYTES + INDEX_BYTES)), fl["stem.pool"]))
    x, hw = "h0", r4
    blocks = resnet_blocks(s)
    for i, (p, cin, q, cout, hw, stride) in enumerate(blocks):
        ho = out_size(hw, stride)
        conv(f"{p}.conv1", x, cin, q, hw, 1, 1)
        y = relu(f"{p}.relu1", bn(f"{p}.bn1", f"{p}.conv1.out", q, hw), B * q * hw * hw)
        conv(f"{p}.conv2", y, q, q, hw, 3, stride)
        y = relu(f"{p}.relu2", bn(f"{p}.bn2", f"{p}.conv2.out", q, ho), B * q * ho * ho)
        conv(f"{p}.conv3", y, q, cout, ho, 1, 1)
        y = bn(f"{p}.bn3", f"{p}.conv3.out", cout, ho)
        short = x
        if stride != 1 or cin != cout:
            conv(f"{p}.down", x, cin, cout, hw, 1, stride)
            short = bn(f"{p}.down_bn", f"{p}.down.out", cout, ho)
        n = B * cout * ho * ho
        ops.append(FwdOp(f"{p}.residual", LoneOp("add", (n,)), ((y, _b(n)), (short, _b(n))), (),
                         (f"{p}.sum", _b(n)), fl[f"{p}.residual"]))
        x = relu(f"{p}.relu3", f"{p}.sum", n, f"h{i + 1}")
        hw = ho
    return ops + _head(s, x, s.widths[-1], hw, fl)


def _head(s: CnnSpec, x: str, c: int, hw: int, fl: dict[str, float]) -> list[FwdOp]:
    """Global average pooling of `x` (c channels of hw x hw), the linear classifier and the loss."""
    B, n = s.batch, s.batch * c * hw * hw
    return [FwdOp("pool", LoneOp("mean", (B, c, hw)), ((x, _b(n)),), (), ("pooled", _b(B * c)), fl["pool"]),
            FwdOp("head", LoneOp("linear", (B, c, s.classes, 1)), (("pooled", _b(B * c)),),
                  (("head.w", _b(c * s.classes)), ("head.b", _b(s.classes))), ("logits", _b(B * s.classes)),
                  fl["head"]),
            FwdOp("loss", LoneOp("cross_entropy", (B, s.classes)), (("logits", _b(B * s.classes)),), (),
                  ("loss", _b(B * s.classes)), fl["loss"])]


def _cnn_forward(s: CnnSpec) -> list[FwdOp]:
    if isinstance(s, ResNetSpec):
        return _resnet_forward(s)
    B, c, hw, q = s.batch, s.channels, s.resolution, max(1, s.channels // 4)
    n, nq = B * c * hw * hw, B * q * hw * hw
    fl = {o.name: o.flops for o in forward_ops(s)}
    ops: list[FwdOp] = []

    def bn(name: str, src: str, dst: str, ch: int, size: int) -> None:
        ops.append(FwdOp(f"{name}.count", LoneOp("count", ()), ((f"{name}.count", 8),), (), (f"{name}.count", 8),
                         fl[f"{name}.count"], False))
        ops.append(FwdOp(name, LoneOp("batch_norm", (B, ch, hw)), ((src, _b(size)),), (), (dst, _b(size)), fl[name]))

    ops.append(FwdOp("stem.conv", LoneOp("conv", (B, s.in_channels, c, hw, 3, 0)),
                     (("images", _b(B * s.in_channels * hw * hw)),), (("stem.conv.w", _b(c * s.in_channels * 9)),),
                     ("stem.conv.out", _b(n)), fl["stem.conv"], input_grad=False))
    bn("stem.bn", "stem.conv.out", "stem.bn.out", c, n)
    ops.append(FwdOp("stem.relu", LoneOp("relu", (n,)), (("stem.bn.out", _b(n)),), (), ("h0", _b(n)), fl["stem.relu"]))
    for i in range(s.blocks):
        p, h = f"block{i}", f"h{i}"
        ops.append(FwdOp(f"{p}.reduce", LoneOp("conv", (B, c, q, hw, 1, 1)), ((h, _b(n)),),
                         ((f"{p}.reduce.w", _b(q * c)),), (f"{p}.r", _b(nq)), fl[f"{p}.reduce"]))
        bn(f"{p}.bn1", f"{p}.r", f"{p}.rb", q, nq)
        ops.append(FwdOp(f"{p}.relu1", LoneOp("relu", (nq,)), ((f"{p}.rb", _b(nq)),), (), (f"{p}.rr", _b(nq)),
                         fl[f"{p}.relu1"]))
        ops.append(FwdOp(f"{p}.conv3x3", LoneOp("conv", (B, q, q, hw, 3, 1)), ((f"{p}.rr", _b(nq)),),
                         ((f"{p}.conv3x3.w", _b(q * q * 9)),), (f"{p}.t", _b(nq)), fl[f"{p}.conv3x3"]))
        bn(f"{p}.bn2", f"{p}.t", f"{p}.tb", q, nq)
        ops.append(FwdOp(f"{p}.relu2", LoneOp("relu", (nq,)), ((f"{p}.tb", _b(nq)),), (), (f"{p}.tr", _b(nq)),
                         fl[f"{p}.relu2"]))
        ops.append(FwdOp(f"{p}.expand", LoneOp("conv", (B, q, c, hw, 1, 1)), ((f"{p}.tr", _b(nq)),),
                         ((f"{p}.expand.w", _b(c * q)),), (f"{p}.e", _b(n)), fl[f"{p}.expand"]))
        bn(f"{p}.bn3", f"{p}.e", f"{p}.eb", c, n)
        ops.append(FwdOp(f"{p}.residual", LoneOp("add", (n,)), ((f"{p}.eb", _b(n)), (h, _b(n))), (),
                         (f"{p}.s", _b(n)), fl[f"{p}.residual"]))
        ops.append(FwdOp(f"{p}.relu3", LoneOp("relu", (n,)), ((f"{p}.s", _b(n)),), (), (f"h{i + 1}", _b(n)),
                         fl[f"{p}.relu3"]))
    return ops + _head(s, f"h{s.blocks}", c, hw, fl)


def _transformer_forward(s: TransformerSpec) -> list[FwdOp]:
    B, t, d, h, V = s.batch, s.seq, s.width, s.heads, s.vocab
    rows, hd = B * t, d // h
    n, att = rows * d, B * h * t * t
    fl = {o.name: o.flops for o in forward_ops(s)}
    ops = [FwdOp("embed.tokens", LoneOp("embedding", (rows, V, d, 1)), (("tokens", rows * INDEX_BYTES),),
                 (("embed.tokens.w", _b(n)),), ("tok", _b(n)), 0.0, input_grad=False),
           FwdOp("embed.positions", LoneOp("embedding", (t, s.positions, d, 1)), (("positions", t * INDEX_BYTES),),
                 (("embed.positions.w", _b(t * d)),), ("pos", _b(t * d)), 0.0, input_grad=False),
           FwdOp("embed.add", LoneOp("add_bcast", (B, t, d)), (("tok", _b(n)), ("pos", _b(n))), (), ("x0", _b(n)),
                 fl["embed.add"])]
    for i in range(s.layers):
        p, x = f"layer{i}", f"x{i}"

        def lin(name: str, src: str, d_in: int, d_out: int) -> FwdOp:
            return FwdOp(f"{p}.{name}", LoneOp("linear", (rows, d_in, d_out, 1)), ((src, _b(rows * d_in)),),
                         ((f"{p}.{name}.w", _b(d_in * d_out)), (f"{p}.{name}.b", _b(d_out))),
                         (f"{p}.{name}.out", _b(rows * d_out)), fl[f"{p}.{name}"])

        ops += [FwdOp(f"{p}.ln1", LoneOp("layer_norm", (rows, d)), ((x, _b(n)),), (), (f"{p}.l1", _b(n)), fl[f"{p}.ln1"]),
                lin("qkv", f"{p}.l1", d, 3 * d),
                FwdOp(f"{p}.scale_q", LoneOp("mul", (n,)), ((f"{p}.qkv.out", _b(n)),), (), (f"{p}.q", _b(n)),
                      fl[f"{p}.scale_q"]),
                FwdOp(f"{p}.scores", LoneOp("bmm", (B * h, t, hd, t)), ((f"{p}.q", _b(n)), (f"{p}.qkv.out", _b(n))),
                      (), (f"{p}.s", _b(att)), fl[f"{p}.scores"]),
                FwdOp(f"{p}.mask", LoneOp("masked_fill", (B * h, t)), ((f"{p}.s", _b(att)),), (), (f"{p}.sm", _b(att)),
                      fl[f"{p}.mask"]),
                FwdOp(f"{p}.softmax", LoneOp("softmax", (B * h, t)), ((f"{p}.sm", _b(att)),), (), (f"{p}.pr", _b(att)),
                      fl[f"{p}.softmax"]),
                FwdOp(f"{p}.weighted", LoneOp("bmm", (B * h, t, t, hd)),
                      ((f"{p}.pr", _b(att)), (f"{p}.qkv.out", _b(n))), (), (f"{p}.y", _b(n)), fl[f"{p}.weighted"]),
                FwdOp(f"{p}.merge_heads", LoneOp("contiguous", (B, h, t, hd)), ((f"{p}.y", _b(n)),), (),
                      (f"{p}.m", _b(n)), fl[f"{p}.merge_heads"]),
                lin("proj", f"{p}.m", d, d),
                FwdOp(f"{p}.residual1", LoneOp("add", (n,)), ((x, _b(n)), (f"{p}.proj.out", _b(n))), (),
                      (f"{p}.x1", _b(n)), fl[f"{p}.residual1"]),
                FwdOp(f"{p}.ln2", LoneOp("layer_norm", (rows, d)), ((f"{p}.x1", _b(n)),), (), (f"{p}.l2", _b(n)),
                      fl[f"{p}.ln2"]),
                lin("fc", f"{p}.l2", d, 4 * d),
                FwdOp(f"{p}.gelu", LoneOp("gelu", (4 * n,)), ((f"{p}.fc.out", _b(4 * n)),), (), (f"{p}.g", _b(4 * n)),
                      fl[f"{p}.gelu"]),
                lin("fc_out", f"{p}.g", 4 * d, d),
                FwdOp(f"{p}.residual2", LoneOp("add", (n,)), ((f"{p}.x1", _b(n)), (f"{p}.fc_out.out", _b(n))), (),
                      (f"x{i + 1}", _b(n)), fl[f"{p}.residual2"])]
    xl = f"x{s.layers}"
    ops += [FwdOp("ln_f", LoneOp("layer_norm", (rows, d)), ((xl, _b(n)),), (), ("lf", _b(n)), fl["ln_f"]),
            FwdOp("head", LoneOp("linear", (rows, d, V, 1) + ((0,) if s.tied else ())), (("lf", _b(n)),),
                  (("embed.tokens.w", _b(d * V)),) if s.tied else (("head.w", _b(d * V)), ("head.b", _b(V))),
                  ("logits", _b(rows * V)), fl["head"]),
            FwdOp("loss", LoneOp("cross_entropy", (rows, V)), (("logits", _b(rows * V)),), (), ("loss", _b(rows * V)),
                  fl["loss"])]
    return ops


def forward_with_operands(spec: CnnSpec | TransformerSpec) -> list[FwdOp]:
    """`families.forward_ops` with every operand named (same ops, order, FLOPs and bytes)."""
    return _cnn_forward(spec) if isinstance(spec, CnnSpec) else _transformer_forward(spec)


def optimizer_of(spec: CnnSpec | TransformerSpec) -> str:
    """The optimizer `torch_families.optimizer` builds for the family."""
    return "sgd" if isinstance(spec, CnnSpec) else "adamw"


def _op(name: str, phase: str, lone: LoneOp, flops: float, operands: list[M.Operand], n: int) -> M.Op:
    # klass: the rate class (the lone op and its phase); kernel: the overhead class
    kind = "gemm" if lone.kind in GEMM_KINDS else ("update" if phase == "update" else "elementwise")
    return M.Op(name, kind, f"{phase}|{lone.key}", float(flops), tuple(operands), n, f"{phase}|{lone.kind}")


def _node(name: str, lone: LoneOp) -> M.Op:
    """An autograd node that runs no kernel (an addition's, a clone's): its call overhead only."""
    return M.Op(name, "elementwise", f"bwd|{lone.key}", 0.0, (), 0, f"bwd|{lone.kind}")


def _r(buf: str, nbytes: int) -> M.Operand:
    return M.Operand(buf, nbytes, False)


def _w(buf: str, nbytes: int) -> M.Operand:
    return M.Operand(buf, nbytes, True)


def _backward(fwd: list[FwdOp], spec: CnnSpec | TransformerSpec) -> list[M.Op]:
    """The backward pass, from the loss back to the first op (the rules in the module docstring)."""
    consumers: dict[str, int] = {}
    for f in fwd:
        for buf, _ in f.inputs:
            consumers[buf] = consumers.get(buf, 0) + 1
    pending: dict[str, int] = {}  # gradients of a forked tensor seen so far
    out: list[M.Op] = []
    qkv_parts: dict[str, int] = {}
    for f in reversed(fwd):
        k, dout = f.lone.kind, ("d:" + f.out[0], f.out[1])
        ops_here: list[M.Operand] = []
        if k == "count":
            pass  # a counter: no gradient
        elif k in ("add", "contiguous"):
            out.append(_node(f"{f.name}.bwd", f.lone))  # the gradient passes through
        elif k in GEMM_KINDS:
            grads = [_w("d:" + b, nb) for b, nb in f.inputs if f.input_grad]
            grads += [_w("d:" + b, nb) for b, nb in f.weights]
            ops_here = [_r(*dout), *(_r(b, nb) for b, nb in f.inputs), *(_r(b, nb) for b, nb in f.weights), *grads]
            mult = (2 if f.input_grad else 1)
            out.append(_op(f"{f.name}.bwd", "bwd", f.lone, mult * f.flops, ops_here, f.out[1] // FLOAT_BYTES))
        elif k == "embedding":
            # the dense backward writes the whole table's gradient (zeros, then the rows used)
            table = _b(f.lone.dims[1] * f.lone.dims[2])
            ops_here = [_r(*dout), *(_r(b, nb) for b, nb in f.inputs), *(_w("d:" + b, table) for b, _ in f.weights)]
            out.append(_op(f"{f.name}.bwd", "bwd", f.lone, 0.0, ops_here, f.out[1] // FLOAT_BYTES))
            if isinstance(spec, TransformerSpec) and spec.tied and f.name == "embed.tokens":
                # the tied head's gradient of the same weight: autograd adds the two
                out.append(_op("embed.tokens.w.grad_sum", "fwd", LoneOp("add", (table // FLOAT_BYTES,)),
                               SUM_FLOPS * table / FLOAT_BYTES,
                               [_r("d:embed.tokens.w", table), _r("d2:embed.tokens.w", table),
                                _w("d:embed.tokens.w", table)], table // FLOAT_BYTES))
        elif k == "add_bcast":  # the token gradient passes through; the positions' is summed over the batch
            pb, pn = f.inputs[1]
            t_d = pn // max(1, spec.batch)
            out.append(_op(f"{f.name}.bwd", "bwd", f.lone, float(pn // FLOAT_BYTES),
                           [_r(*dout), _w("d:" + pb, t_d)], pn // FLOAT_BYTES))
        else:
            saved = {"relu": [f.out], "softmax": [f.out], "masked_fill": [], "mul": [],
                     "mean": [], "cross_entropy": list(f.inputs)}.get(k, list(f.inputs))
            ops_here = [_r(*dout), *(_r(b, nb) for b, nb in saved), *(_w("d:" + b, nb) for b, nb in f.inputs)]
            out.append(_op(f"{f.name}.bwd", "bwd", f.lone, f.flops, ops_here, f.inputs[0][1] // FLOAT_BYTES))
        # a tensor read by several ops: its gradients are summed once the last one arrives
        for b, nb in (f.inputs if f.input_grad else ()):
            if consumers.get(b, 1) > 1 and not b.endswith("qkv.out"):
                pending[b] = pending.get(b, 0) + 1
                if pending[b] == consumers[b]:
                    out.append(_op(f"{b}.grad_sum", "fwd", LoneOp("add", (nb // FLOAT_BYTES,)),
                                   SUM_FLOPS * nb / FLOAT_BYTES,
                                   [_r("d:" + b, nb), _r("d2:" + b, nb), _w("d:" + b, nb)], nb // FLOAT_BYTES))
            elif b.endswith("qkv.out"):
                qkv_parts[b] = qkv_parts.get(b, 0) + 1
                if qkv_parts[b] == 3:  # q (through the scaling), k and v: stacked into one gradient
                    out.append(_op(f"{b}.grad_stack", "fwd", LoneOp("contiguous", (3 * nb // FLOAT_BYTES,)),
                                   STACK_FLOPS, [_r("d:" + b, 3 * nb), _w("d:" + b, 3 * nb)],
                                   3 * nb // FLOAT_BYTES))
    return out


def _update(spec: CnnSpec | TransformerSpec) -> list[M.Op]:
    """One op per parameter tensor: the kernels the single-tensor optimizer runs on it
    (UPDATE_KERNELS), each operand listed as often as a kernel reads or writes it."""
    opt = optimizer_of(spec)
    out = []
    for name, n in param_tensors(spec):
        buf = {"w": name, "g": "d:" + name, "m": name + ".m", "v": name + ".v", "t": name + ".tmp1",
               "u": name + ".tmp2"}
        ops = [o for _aten, reads, writes in UPDATE_KERNELS[opt]
               for o in [*(_r(buf[c], _b(n)) for c in reads), *(_w(buf[c], _b(n)) for c in writes)]]
        out.append(_op(f"{name}.update", "update", LoneOp(opt, ()), UPDATE_FLOPS[opt] * n, ops, n))
    return out


def step_ops(spec: CnnSpec | TransformerSpec) -> list[M.Op]:
    """One training step's ops in execution order: forward, backward, update."""
    fwd = forward_with_operands(spec)
    ops = [_op(f.name, "fwd", f.lone, f.flops,
               [*(_r(b, nb) for b, nb in f.inputs), *(_r(b, nb) for b, nb in f.weights), _w(*f.out)],
               f.out[1] // FLOAT_BYTES) for f in fwd]
    return _with_matmul_copies(ops + _backward(fwd, spec), spec) + _update(spec)


def _with_matmul_copies(ops: list[M.Op], spec: CnnSpec | TransformerSpec) -> list[M.Op]:
    """The copies `torch.matmul` makes inside attention: with more than one sequence, the scaled
    queries, the keys and the values are strided views (heads split out of one projection) that
    it must reshape into 3-d batches, and reshape copies them (the profiler shows aten::clone
    under aten::matmul; with one sequence the views reshape without a copy). Each copy is a
    forward op before its matmul and a pass-through node (CloneBackward) after the matmul's
    backward."""
    if not isinstance(spec, TransformerSpec) or spec.batch <= 1:
        return ops
    B, t, d, h = spec.batch, spec.seq, spec.width, spec.heads
    n, lone = B * t * d, LoneOp("contiguous", (B, h, t, d // h))
    copies = {"scores": (("q", ".q"), ("k", ".qkv.out")), "weighted": (("v", ".qkv.out"),)}
    out: list[M.Op] = []
    for op in ops:
        layer, _, what = op.name.partition(".")
        base = what.removesuffix(".bwd")
        here = [(f"{layer}.{base}.copy_{name}", f"{layer}{src}") for name, src in copies.get(base, ())]
        if not what.endswith(".bwd"):
            out += [_op(name, "fwd", lone, 0.0, [_r(src, _b(n)), _w(name, _b(n))], n) for name, src in here]
        out.append(op)
        if what.endswith(".bwd"):
            out += [_node(f"{name}.bwd", lone) for name, _ in here]
    return out


def lone_ops(spec: CnnSpec | TransformerSpec) -> list[LoneOp]:
    """The distinct ops whose rates and overheads a prediction of `spec` reads."""
    seen: dict[str, LoneOp] = {}
    for op in step_ops(spec):
        phase, key = op.klass.split("|", 1)
        if phase != "update":
            seen.setdefault(key, _lone_from_key(key))
    return list(seen.values())


def forward_bytes(op: LoneOp) -> float:
    """Bytes of the lone op's forward operands (inputs, weights, output) at its shape."""
    k, d = op.kind, op.dims
    if k == "conv":
        b, cin, cout, hw, ks, _, *rest = d
        ho = out_size(hw, rest[0] if rest else 1)
        return (b * (cin * hw * hw + cout * ho * ho) + cout * cin * ks * ks) * FLOAT_BYTES
    if k == "linear":
        rows, din, dout, *_ = d
        return (rows * (din + dout) + din * dout) * FLOAT_BYTES
    if k == "maxpool":
        b, c, hw = d
        return b * c * (hw * hw + out_size(hw, 2) ** 2 * 3) * FLOAT_BYTES  # output and its int64 indices
    if k == "bmm":
        gr, m, kk, n = d
        return gr * (m * kk + kk * n + m * n) * FLOAT_BYTES
    if k in ("batch_norm", "mean"):
        b, c, hw = d
        return 2 * b * c * hw * hw * FLOAT_BYTES
    if k in ("masked_fill", "softmax"):
        return 2 * d[0] * d[1] * d[1] * FLOAT_BYTES
    if k == "embedding":
        return (d[0] * d[2] * 2) * FLOAT_BYTES
    if k == "cross_entropy":
        return 2 * d[0] * d[1] * FLOAT_BYTES
    n = 1
    for x in d:
        n *= x
    return 3 * n * FLOAT_BYTES


# a lone op's rate measurement holds its forward operands and, for the backward, their
# gradients: about twice the forward's bytes (torch_rates cuts the forward to 1/this of a cache)
LONE_FOOTPRINT = 2


def rate_level(klass: str, batch: int, ceilings: M.Ceilings) -> M.LevelCeiling | None:
    """The level that held the lone op's operands while its rate (`klass`, read for a point of
    `batch`) was measured; None for the optimizer's (measured on a tensor of its own)."""
    phase, key = klass.split("|", 1)
    table = ceilings.rates_flops.get(klass)
    if phase == "update" or not table or "(" not in key:
        return None
    measured = min({b for b, _ in table}, key=lambda b: abs(math.log(max(b, 1)) - math.log(max(batch, 1))))
    return ceilings.level_for(forward_bytes(_lone_from_key(key).with_batch(measured)) * LONE_FOOTPRINT)


def excess_memory_s(op: M.Op, footprint: dict[str, int], ceilings: M.Ceilings, at: M.LevelCeiling | None) -> float:
    """The inputs' time beyond what the op's rate already paid: its rate was measured with its
    operands in level `at`, so each input that the step brings from a farther level costs its
    bytes at that level's bandwidth less at `at`'s, on top of the op's compute (a kernel that
    ran at its rate from `at` waits for the farther level's reads). Outputs add nothing: stores
    retire into the caches, which write back behind the work (their bytes stay in the op's
    memory time, the roofline's other side). Over four runs on the Xeon guest, counting the
    outputs too put the transformer's steps 4-6 % high; inputs only, 1-3 % low."""
    if at is None:
        return 0.0
    kern = op.stream_kernel
    extra = 0.0
    for o in op.operands:
        if o.write:
            continue
        lv = ceilings.levels[-1] if o.fresh else ceilings.level_for(footprint[o.buffer])
        extra += o.bytes * max(0.0, 1 / lv.bandwidth_bps[kern] - 1 / at.bandwidth_bps[kern])
    return extra


def _lone_from_key(key: str) -> LoneOp:
    kind, rest = key.split("(", 1)
    dims = tuple(int(x) for x in rest.rstrip(")").split(",") if x)
    return LoneOp(kind, dims)


# glibc's largest dynamic mmap threshold (64-bit): a tensor above it is mapped fresh when
# allocated and unmapped when freed, so a step faults its pages in again every time
MMAP_THRESHOLD_BYTES = 32 << 20


def update_fixed_s(inputs: ModelInputs) -> float:
    """The optimizer's fixed cost per step (its per-tensor cost is each update op's overhead)."""
    return inputs.update_call_s[0] if inputs.update_call_s is not None else 0.0


def step_overhead_s(spec: CnnSpec | TransformerSpec, overhead_s: dict[str, float],
                    step_overheads: ModelInputs) -> float:
    """The step's call overheads as predict_family_step sums them (each op's, autograd's start,
    the optimizer's fixed cost), without the work: what a step of a tiny instance costs."""
    ops = step_ops(spec)
    missing = {op.kernel for op in ops} - set(overhead_s)
    if missing:
        raise M.MissingCeiling(f"no measured call overhead for {sorted(missing)[0]!r}")
    return (sum(overhead_s[op.kernel] for op in ops) + step_overheads.backward_call_s
            + update_fixed_s(step_overheads))


def tiny_like(spec: CnnSpec | TransformerSpec) -> CnnSpec | TransformerSpec:
    """The same network (its layers, blocks and ops) with every size at its least: a step of it
    is its calls and almost none of the work."""
    import dataclasses

    if isinstance(spec, TransformerSpec):
        # two sequences where the network has several: attention then copies as it does at size
        return dataclasses.replace(spec, batch=min(spec.batch, 2), seq=2, width=spec.heads,
                                   vocab=min(spec.vocab, 16), context=2 if spec.context else 0)
    if isinstance(spec, ResNetSpec):  # 64 px: the last stage keeps 2x2 (batch norm needs > 1 value)
        # widths 4x the stem, as ResNet-50's 256 over 64, so every stage keeps its projection
        return dataclasses.replace(spec, batch=1, resolution=64, stem_channels=4, widths=(16, 32, 64, 128),
                                   channels=128, classes=10)
    return dataclasses.replace(spec, batch=1, channels=4, resolution=4)


def fresh_bytes(op: M.Op) -> int:
    """Bytes of the new tensors over glibc's mmap threshold that an op allocates: PyTorch gives
    every forward and backward op's output a new tensor, while the optimizer works in place on
    the weights and their states and allocates only its temporary."""
    phase = op.klass.split("|", 1)[0]
    seen: set[str] = set()
    total = 0
    for o in op.operands:
        new = o.write and (phase != "update" or ".tmp" in o.buffer)
        if new and o.buffer not in seen and o.bytes > MMAP_THRESHOLD_BYTES:
            seen.add(o.buffer)
            total += o.bytes
    return total


def predict_family_step(spec: CnnSpec | TransformerSpec, ceilings: M.Ceilings,
                        step_overheads: ModelInputs) -> M.Prediction:
    """The model for one training step of `spec` on `ceilings` (one device, one thread count).

    ceilings.rates_flops: {"<phase>|<lone key>": {(batch measured, 0): FLOP/s}} for every op
    class of the step, and {"update|<optimizer>()": ...}; ceilings.overhead_s: seconds per call
    by "<phase>|<lone kind>". `step_overheads`: the per-step terms (autograd's start, the
    optimizer's fixed cost, a fresh page's cost per byte). A missing one raises
    model.MissingCeiling."""
    ops = step_ops(spec)
    feet = M.reuse_footprints(ops)
    preds: list[M.OpPrediction] = []
    for op, foot in zip(ops, feet):
        kern = op.stream_kernel
        mem_s, where = M.op_memory_s(op, foot, ceilings)
        mem_s += fresh_bytes(op) * step_overheads.fault_s_per_byte
        comp_s = op.flops / ceilings.rate(op.klass, spec.batch) if op.flops else 0.0
        extra_s = excess_memory_s(op, foot, ceilings, rate_level(op.klass, spec.batch, ceilings)) if op.flops else 0.0
        if op.kernel not in ceilings.overhead_s:
            raise M.MissingCeiling(f"no measured call overhead for {op.kernel!r}")
        preds.append(M.OpPrediction(op.name, op.flops, float(op.bytes), comp_s, mem_s,
                                    ceilings.overhead_s[op.kernel], where, kern, extra_s))
    comp = sum(p.compute_s for p in preds)
    mem = sum(p.memory_s for p in preds)
    roof = sum(p.roofline_s for p in preds)
    over = sum(p.overhead_s for p in preds) + step_overheads.backward_call_s + update_fixed_s(step_overheads)
    if over >= roof:
        bound = "overhead"
    else:
        c_share = sum(p.roofline_s for p in preds if op_bound(p) == "compute")
        bound = "compute" if c_share >= roof / 2 else "memory"
    return M.Prediction(predicted_s=roof + over, predicted_max_s=max(comp, mem), predicted_sum_s=comp + mem,
                        flops=sum(p.flops for p in preds), bytes=sum(p.bytes for p in preds),
                        compute_s=comp, memory_s=mem, roofline_s=roof, overhead_s=over, bound=bound, ops=preds)


def work_bound(p: M.OpPrediction) -> str:
    """What bounds one op's work: "compute" (its rate, more than any level's stream) or the
    name of the level its traffic mostly comes from."""
    if p.compute_s >= max(p.memory_s, p.excess_s):
        return "compute"
    names = list(p.levels.values())
    return max(set(names), key=names.count) if names else "memory"


def op_bound(p: M.OpPrediction) -> str:
    """What bounds one op: its work's bound, or "overhead" when the call costs more than the work."""
    return "overhead" if p.overhead_s >= p.roofline_s else work_bound(p)
