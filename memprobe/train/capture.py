"""One training step of any PyTorch network, captured from the dispatcher (stage 4: result ->
**train** -> report: the workload side of the prediction). Needs the optional extra
(`memprobe[torch]`).

`capture_step` runs one step (forward, loss, backward, the optimizer's step) under a
`TorchDispatchMode` and records every ATen operator in the order PyTorch dispatches it, as a
`CapturedOp`: its name, its tensors' shapes, strides and dtypes, the storages it reads and
writes (by identity: one integer per untyped storage, so a tensor's reuse across ops, and a
parameter's, gradient's or optimizer state's across steps, is known), whether it runs a kernel
or makes a view (decided by the op schema's alias information), and its work:

* FLOPs by `torch.utils.flop_counter`'s registered formulas (GEMMs, convolutions, attention);
* element-wise ops (`torch.Tag.pointwise`) counted by their output's elements, reductions
  (`torch.Tag.reduction`, and the normalisations, softmaxes and losses of REDUCTIONS) by their
  input's, copies and fills (COPIES) by their elements with no FLOPs, allocations (CALLS) as
  a call only;
* anything else is *unmodelled*: kept in the graph, flagged, never counted as zero.

The step runs under `FakeTensorMode` (`capture_step(build=...)` builds the network there), so
a full-size GPT-2 or ResNet-50 is captured without allocating it. The optimizer is built with
`foreach=False` and stepped once before the captured step, so the captured step is a steady
one: its states exist, and the step records what every later step dispatches. The graph
(`StepGraph`) holds shapes and identities only: nothing in it depends on the machine.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

PHASES = ("zero_grad", "forward", "backward", "optimizer")
ROLES = ("param", "buffer", "grad", "state", "input", "activation")
OPTIMIZERS = ("sgd", "adamw")
CATEGORIES = ("gemm", "pointwise", "reduction", "copy", "call", "view", "unmodelled")

# reductions PyTorch does not tag as such: counted by their input's elements
REDUCTIONS = frozenset({
    "native_layer_norm", "native_layer_norm_backward", "_softmax", "_log_softmax", "_softmax_backward_data",
    "_log_softmax_backward_data", "native_batch_norm", "native_batch_norm_backward", "_native_batch_norm_legit",
    "_native_batch_norm_legit_functional", "_native_batch_norm_legit_no_training", "nll_loss_forward",
    "nll_loss_backward", "nll_loss2d_forward", "nll_loss2d_backward", "max_pool2d_with_indices",
    "max_pool2d_with_indices_backward", "avg_pool2d", "avg_pool2d_backward", "_adaptive_avg_pool2d",
    "_adaptive_avg_pool2d_backward", "cumsum", "var_mean", "linalg_vector_norm", "embedding_dense_backward",
    "native_group_norm", "native_group_norm_backward", "_fused_rms_norm", "_fused_rms_norm_backward",
    "mse_loss", "mse_loss_backward", "binary_cross_entropy_with_logits", "_safe_softmax"})
# data movement: counted by the elements written, no FLOPs
COPIES = frozenset({
    "copy_", "_to_copy", "clone", "fill_", "zero_", "zeros_like", "ones_like", "full_like", "zeros", "ones", "full",
    "new_zeros", "new_ones", "new_full", "cat", "stack", "index_select", "embedding", "gather", "scatter",
    "scatter_add", "scatter_add_", "index", "_unsafe_index", "index_put_", "index_put", "_index_put_impl_",
    "native_dropout", "slice_backward", "select_backward", "arange", "tril", "triu", "masked_fill_",
    "contiguous", "repeat", "constant_pad_nd", "flip", "roll", "bernoulli_", "uniform_", "normal_",
    "scalar_tensor", "lift_fresh_copy", "as_strided_scatter", "slice_scatter", "select_scatter", "_pdist_forward"})
# element-wise ops PyTorch does not tag `pointwise` (activations' backward above all; ReLU6's
# backward, hardtanh_backward, left a MobileNet's coverage at 98 %): counted as the tagged ones are
POINTWISE_UNTAGGED = frozenset({
    "hardtanh_backward", "leaky_relu_backward", "elu_backward", "hardswish", "hardswish_backward",
    "hardsigmoid_backward", "softplus_backward", "mish_backward", "log_sigmoid_forward", "log_sigmoid_backward",
    "hardshrink_backward", "softshrink_backward", "_prelu_kernel", "_prelu_kernel_backward", "glu", "glu_backward",
    "rrelu_with_noise", "rrelu_with_noise_backward"})
# a call and nothing else: allocations, reads of one scalar to the host
CALLS = frozenset({"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "lift_fresh",
                   "_local_scalar_dense", "resize_", "set_", "record_stream", "_assert_async"})
# ops whose mutated argument is only written (the schema says "written", not whether it is read)
WRITE_ONLY_SELF = frozenset({"copy_", "zero_", "fill_", "uniform_", "normal_", "bernoulli_", "index_put_"})


# PyTorch's CPU attention kernels, which flop_counter registers no formula for: its own
# attention formulas (sdpa_flop_count, sdpa_backward_flop_count) on their query, key, value
SDPA_CPU = frozenset({"_scaled_dot_product_flash_attention_for_cpu",
                      "_scaled_dot_product_flash_attention_for_cpu_backward"})


def _sdpa_cpu_flops(packet: str, inputs: list[TensorMeta]) -> float:
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    if packet.endswith("_backward"):  # (grad_out, query, key, value, out, logsumexp, ...)
        g, q, k, v = (m.shape for m in inputs[:4])
        return float(sdpa_backward_flop_count(g, q, k, v))
    q, k, v = (m.shape for m in inputs[:3])
    return float(sdpa_flop_count(q, k, v))


class CaptureError(ValueError):
    """The step could not be captured: what the network or its inputs did, in one line."""


@dataclass(frozen=True)
class TensorMeta:
    """A tensor an op reads or writes: its shape, strides, dtype and the storage it lives in."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str  # "float32"...
    storage: int  # StepGraph.storages key
    offset: int = 0  # storage offset, in elements
    itemsize: int = 4

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the distinct elements it addresses (an expanded tensor's stride 0 repeats)."""
        n = self.numel
        if n == 0:
            return 0
        if any(st == 0 and s > 1 for s, st in zip(self.shape, self.stride)):
            n = min(n, 1 + sum((s - 1) * abs(st) for s, st in zip(self.shape, self.stride)))
        return n * self.itemsize


@dataclass(frozen=True)
class Storage:
    id: int
    nbytes: int
    role: str  # ROLES


@dataclass(frozen=True)
class CapturedOp:
    """One ATen call of the step, in dispatch order."""

    index: int
    name: str  # "aten.mm.default"
    phase: str  # PHASES
    category: str  # CATEGORIES
    inputs: tuple[TensorMeta, ...]  # tensor arguments, in the schema's order
    outputs: tuple[TensorMeta, ...]
    reads: tuple[int, ...]  # storage ids, each once
    writes: tuple[int, ...]
    flops: float | None  # None: unmodelled; elements for element-wise ops and reductions
    elements: int  # the elements its work is counted by (0 for a view or a call)
    # storages whose last tensor went away after this op, before the next (the step's frees)
    frees: tuple[int, ...] = ()
    # the call as dispatched, for a replay: non-tensor arguments kept, tensors as their index
    # into `inputs` (("tensor", i)); not compared (a graph is its ops' records)
    args: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    kwargs: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)

    @property
    def kernel(self) -> bool:
        """Whether a kernel runs (a view aliases its input and runs none)."""
        return self.category != "view"

    @property
    def modelled(self) -> bool:
        return self.category != "unmodelled"

    @property
    def packet(self) -> str:
        """The operator without its overload: "mm"."""
        return self.name.split(".")[1]

    def read_bytes(self) -> dict[int, int]:
        """Bytes read per storage (the tensors' addressed bytes, each storage's largest)."""
        return self._bytes(self.reads, self.inputs)

    def write_bytes(self) -> dict[int, int]:
        return self._bytes(self.writes, self.inputs + self.outputs)

    @staticmethod
    def _bytes(ids: tuple[int, ...], metas: tuple[TensorMeta, ...]) -> dict[int, int]:
        out: dict[int, int] = {}
        for m in metas:
            if m.storage in ids:
                out[m.storage] = max(out.get(m.storage, 0), m.nbytes)
        return out


@dataclass(frozen=True)
class StepGraph:
    """One training step as PyTorch dispatches it. Machine-independent."""

    model: str
    batch: int
    optimizer: str
    ops: tuple[CapturedOp, ...]
    storages: dict[int, Storage] = field(compare=False)
    capture_s: float = field(default=0.0, compare=False)

    @property
    def kernels(self) -> list[CapturedOp]:
        return [o for o in self.ops if o.kernel]

    @property
    def unmodelled(self) -> list[CapturedOp]:
        return [o for o in self.ops if not o.modelled]

    @property
    def flops(self) -> float:
        """FLOPs of the modelled ops (GEMMs by formula, element-wise ops and reductions by elements)."""
        return sum(o.flops or 0.0 for o in self.ops)

    def counts(self, phase: str | None = None) -> Counter[str]:
        return Counter(o.name for o in self.ops if phase is None or o.phase == phase)

    def role(self, storage: int) -> str:
        return self.storages[storage].role


def _dtype_name(dt: Any) -> str:
    return str(dt).removeprefix("torch.")


class _Ids:
    """Storage identities: one integer per untyped storage. A weak reference to each tells when
    its last tensor is gone (`sweep`): that storage is freed there, and its address may be
    handed to a new storage, which gets a new id."""

    def __init__(self) -> None:
        self.by_key: dict[int, int] = {}
        self.nbytes: dict[int, int] = {}
        self.watch: dict[int, tuple[int, Any]] = {}  # id -> (key, StorageWeakRef)

    def of(self, t: Any) -> int:
        from torch.multiprocessing.reductions import StorageWeakRef

        st = t.untyped_storage()
        key = st._cdata
        sid = self.by_key.get(key)
        if sid is None:
            sid = len(self.nbytes)
            self.by_key[key] = sid
            self.watch[sid] = (key, StorageWeakRef(st))
        self.nbytes[sid] = max(self.nbytes.get(sid, 0), int(st.nbytes()))
        return sid

    def pin(self) -> None:
        """Stop watching every storage seen so far (they outlive the step); their ids stay."""
        self.pinned = {**getattr(self, "pinned", {}), **{sid: ref for sid, (_, ref) in self.watch.items()}}
        self.watch.clear()

    def sweep(self) -> list[int]:
        """The storages freed since the last sweep (their ids retired)."""
        gone = [sid for sid, (_, ref) in self.watch.items() if ref.expired()]
        for sid in gone:
            key, _ = self.watch.pop(sid)
            if self.by_key.get(key) == sid:
                del self.by_key[key]
        return gone

    def meta(self, t: Any) -> TensorMeta:
        return TensorMeta(tuple(int(s) for s in t.shape), tuple(int(s) for s in t.stride()),
                          _dtype_name(t.dtype), self.of(t), int(t.storage_offset()), int(t.element_size()))


def _recorder(ids: _Ids, ops: list[CapturedOp], phase: list[str], frees: dict[int, list[int]]) -> Any:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.flop_counter import flop_registry

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            if ops:  # what the code between the last op and this one let go of
                frees.setdefault(len(ops) - 1, []).extend(ids.sweep())
            out = func(*args, **kwargs)
            if func.namespace in ("profiler", "prim"):
                return out  # profiler markers, prim.device: no kernel
            ops.append(_record(func, args, kwargs, out, ids, len(ops), phase[0], flop_registry, torch, tree_flatten))
            return out

    return Recorder()


def _record(func: Any, args: tuple, kwargs: dict, out: Any, ids: _Ids, index: int, phase: str,
            flop_registry: dict, torch: Any, tree_flatten: Callable) -> CapturedOp:
    schema = func._schema
    packet = func._overloadpacket.__name__ if hasattr(func._overloadpacket, "__name__") else str(func).split(".")[1]
    inputs: list[TensorMeta] = []
    in_tensors: list[Any] = []
    reads: list[int] = []
    writes: list[int] = []

    def arg_tensors(v: Any) -> list[Any]:
        leaves, _ = tree_flatten(v)
        return [x for x in leaves if isinstance(x, torch.Tensor)]

    bound = list(zip(schema.arguments, args)) + [(a, kwargs[a.name]) for a in schema.arguments
                                                  if a.name in kwargs]
    for a, v in bound:
        ts = arg_tensors(v)
        mutated = a.alias_info is not None and a.alias_info.is_write
        for t in ts:
            m = ids.meta(t)
            inputs.append(m)
            in_tensors.append(t)
            if mutated:
                writes.append(m.storage)
                if not (a.kwarg_only and a.name.startswith("out")) and not (
                        packet in WRITE_ONLY_SELF and a.name == "self"):
                    reads.append(m.storage)
            else:
                reads.append(m.storage)
    out_t = arg_tensors(out)
    outputs = [ids.meta(t) for t in out_t]
    in_ids = {m.storage for m in inputs}
    for m in outputs:
        if m.storage not in in_ids:
            writes.append(m.storage)
    # a view: no write in the schema and every output aliases an input's storage
    is_view = (not schema.is_mutable and bool(outputs) and all(m.storage in in_ids for m in outputs)
               and packet not in CALLS)
    flops: float | None = None
    elements = 0
    if is_view:
        category, flops = "view", 0.0
    elif packet in SDPA_CPU:
        category = "gemm"
        flops = _sdpa_cpu_flops(packet, inputs)
        elements = max((m.numel for m in outputs), default=0)
    elif func._overloadpacket in flop_registry:
        category = "gemm"
        try:
            flops = float(flop_registry[func._overloadpacket](*args, **kwargs, out_val=out))
        except Exception:  # a formula that cannot read this overload's arguments
            category, flops = "unmodelled", None
        elements = max((m.numel for m in outputs), default=0)
    elif torch.Tag.pointwise in func.tags or packet in POINTWISE_UNTAGGED:
        category = "pointwise"
        elements = max([m.numel for m in outputs] + [m.numel for m, t in zip(inputs, in_tensors)
                                                     if m.storage in writes], default=0)
        flops = float(elements)
    elif torch.Tag.reduction in func.tags or packet in REDUCTIONS:
        category = "reduction"
        elements = max((m.numel for m in inputs), default=0)
        flops = float(elements)
    elif packet in COPIES:
        category, flops = "copy", 0.0
        elements = max([m.numel for m in outputs] + [m.numel for m in inputs if m.storage in writes], default=0)
    elif packet in CALLS:
        category, flops = "call", 0.0
    else:
        category = "unmodelled"
    # the call for a replay: tensors by their index into `inputs`
    slot: dict[int, int] = {}
    for i, t in enumerate(in_tensors):
        slot.setdefault(id(t), i)

    def placeholder(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return ("tensor", slot[id(v)])
        if isinstance(v, (list, tuple)):
            return type(v)(placeholder(x) for x in v)
        return v

    r_args = tuple(placeholder(a) for a in args)
    r_kwargs = tuple((k, placeholder(v)) for k, v in kwargs.items())
    return CapturedOp(index, str(func), phase, category, tuple(inputs), tuple(outputs),
                      tuple(dict.fromkeys(reads)), tuple(dict.fromkeys(writes)), flops, int(elements),
                      args=r_args, kwargs=r_kwargs)


def make_optimizer(name: str, params: Any, lr: float | None = None) -> Any:
    """The optimizer a captured (and a measured) step runs: single-tensor path (foreach=False)."""
    import torch

    if name == "sgd":
        return torch.optim.SGD(params, lr=lr or 1e-3, momentum=0.9, foreach=False)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr or 1e-4, foreach=False)
    raise CaptureError(f"unknown optimizer {name!r} (one of {', '.join(OPTIMIZERS)})")


def call_model(model: Any, inputs: Any) -> Any:
    """The forward: a dict as keyword arguments, a tuple or list as positional ones, else one."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def loss_of(output: Any, loss_fn: Callable[[Any], Any] | None) -> Any:
    """The step's loss: loss_fn(output) where given, else output.loss (Hugging Face's)."""
    if loss_fn is not None:
        return loss_fn(output)
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, dict):
        loss = output.get("loss")
    if loss is None:
        raise CaptureError("the model's output has no .loss: return (model, inputs, loss_fn) with "
                           "loss_fn(output) -> scalar tensor, or pass labels so that the model computes its loss")
    return loss


def run_step(model: Any, inputs: Any, loss_fn: Callable[[Any], Any] | None, opt: Any,
             phase: list[str] | None = None) -> None:
    """One training step: zero_grad (set to none), forward and loss, backward, the optimizer's step."""
    phase = phase if phase is not None else [""]
    phase[0] = "zero_grad"
    opt.zero_grad(set_to_none=True)
    phase[0] = "forward"
    loss = loss_of(call_model(model, inputs), loss_fn)
    if getattr(loss, "dim", lambda: 1)() != 0:
        raise CaptureError(f"the loss must be a scalar tensor, not shape {tuple(loss.shape)}")
    phase[0] = "backward"
    loss.backward()
    phase[0] = "optimizer"
    opt.step()


def _tensors(v: Any) -> list[Any]:
    import torch
    from torch.utils._pytree import tree_flatten

    leaves, _ = tree_flatten(v)
    return [x for x in leaves if isinstance(x, torch.Tensor)]


def capture_step(build: Callable[[], tuple] | None = None, *, model: Any = None, inputs: Any = None,
                 loss_fn: Callable[[Any], Any] | None = None, optimizer: str = "sgd", name: str = "model",
                 batch: int | None = None, fake: bool = True) -> StepGraph:
    """The op graph of one steady training step.

    Either `build()` returning (model, inputs) or (model, inputs, loss_fn), called under fake
    tensors (nothing allocated), or a built `model` and `inputs`: copied to fake tensors with
    `fake=True` (FakeCopyMode), run as they are with `fake=False` (tiny models, tests).
    The optimizer (`optimizer`: "sgd" with momentum or "adamw") is stepped once, untraced, on
    zero gradients so that its states exist; then one step is recorded."""
    import contextlib

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.utils.stateless import _reparametrize_module

    if optimizer not in OPTIMIZERS:
        raise CaptureError(f"unknown optimizer {optimizer!r} (one of {', '.join(OPTIMIZERS)})")
    t0 = time.perf_counter()
    # a built module's loss may close over real tensors (its labels): converted as they come
    mode = FakeTensorMode(allow_non_fake_inputs=build is None) if fake else None
    swap: Any = contextlib.nullcontext()
    with mode if mode is not None else contextlib.nullcontext():
        if build is not None:
            got = build()
            if not isinstance(got, tuple) or len(got) not in (2, 3):
                raise CaptureError("the builder must return (model, inputs) or (model, inputs, loss_fn)")
            model, inputs = got[0], got[1]
            loss_fn = got[2] if len(got) == 3 else loss_fn
        elif model is None:
            raise CaptureError("capture_step needs a builder or a model and its inputs")
    if build is None and mode is not None and isinstance(model, torch.nn.Module):
        # a built module: its parameters and buffers swapped for fake copies for the step
        # (tied weights stay tied), the module itself left as it was
        fakes = {n: torch.nn.Parameter(mode.from_tensor(p.detach()), requires_grad=p.requires_grad)
                 for n, p in model.named_parameters()}
        fakes.update({n: mode.from_tensor(b) for n, b in model.named_buffers()})
        swap = _reparametrize_module(model, fakes, tie_weights=True)
        inputs = torch.utils._pytree.tree_map_only(torch.Tensor, mode.from_tensor, inputs)
    ctx = mode if mode is not None else contextlib.nullcontext()
    with ctx, swap:
        if not isinstance(model, torch.nn.Module):
            raise CaptureError(f"the model must be a torch.nn.Module, not {type(model).__name__}")
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise CaptureError("the model has no parameter that requires a gradient")
        opt = make_optimizer(optimizer, params)
        for p in params:  # the states, as every step after the first finds them
            p.grad = torch.zeros_like(p)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ids = _Ids()
        records: list[CapturedOp] = []
        frees: dict[int, list[int]] = {}
        phase = ["zero_grad"]
        # the identities of what exists before the step, in a stable order
        for p in params:
            ids.of(p)
        for b in model.buffers():
            ids.of(b)
        for t in _tensors(inputs):
            ids.of(t)
        for st in opt.state.values():
            for t in _tensors(dict(st)):
                ids.of(t)
        ids.pin()  # all of these outlive the step: not swept
        with _recorder(ids, records, phase, frees):
            run_step(model, inputs, loss_fn, opt, phase)
        if records:
            frees.setdefault(len(records) - 1, []).extend(ids.sweep())
        records = [dataclasses.replace(r, frees=tuple(frees[r.index])) if frees.get(r.index) else r for r in records]
        roles: dict[int, str] = {}
        for t in _tensors(inputs):
            roles[ids.of(t)] = "input"
        for st in opt.state.values():
            for t in _tensors(dict(st)):
                roles[ids.of(t)] = "state"
        for b in model.buffers():
            roles[ids.of(b)] = "buffer"
        for p in params:
            roles[ids.of(p)] = "param"
            if p.grad is not None:
                roles[ids.of(p.grad)] = "grad"
    storages = {sid: Storage(sid, n, roles.get(sid, "activation")) for sid, n in ids.nbytes.items()}
    if batch is None:
        first = _tensors(inputs)
        batch = int(first[0].shape[0]) if first and first[0].dim() else 1
    return StepGraph(name, int(batch), optimizer, tuple(records), storages, time.perf_counter() - t0)


def summary(graph: StepGraph) -> dict[str, Any]:
    """Counts by phase and category, FLOPs, the unmodelled ops by name."""
    by = Counter((o.phase, o.category) for o in graph.ops)
    return {"model": graph.model, "batch": graph.batch, "optimizer": graph.optimizer, "ops": len(graph.ops),
            "kernels": len(graph.kernels), "flops": graph.flops,
            "by_phase_category": {f"{p}/{c}": n for (p, c), n in sorted(by.items())},
            "unmodelled": dict(Counter(o.name for o in graph.unmodelled))}
