"""The CNN and transformer families (`families.py`) in PyTorch, built from the same specs, and
trained for real: forward, backward and an optimizer step (SGD with momentum for the CNN, AdamW
for the transformer) on a fixed synthetic batch. Needs the optional extra (`memprobe[torch]`).

What a step runs is captured from the dispatcher (`capture.capture_step`); `profile_step` reads
what PyTorch's profiler records for a real step, for the test that holds the capture to it.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

from memprobe.train.catalog import FAMILY_MODELS, names_text
from memprobe.train.families import CnnSpec, ResNetSpec, TransformerSpec, resnet_blocks


def torch_missing() -> str | None:
    """Why the torch families cannot run here, in one line; None when torch imports."""
    try:
        import torch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install's OSError
        return f"the {names_text(FAMILY_MODELS)} families need PyTorch (pip install 'memprobe[torch]'): {exc}"
    return None


# where the families' PyTorch work runs: "cpu", or GPU_DEVICE inside on_device(GPU_DEVICE).
# Networks and batches are built there, and every timing waits for the device
# (synchronize). The tests run the GPU path on PyTorch's "meta" device (shapes, no data).
_DEVICE = "cpu"
GPU_DEVICE = "cuda"


@contextlib.contextmanager
def on_device(device: str) -> Iterator[None]:
    """Run the families' PyTorch work (build, batch, timings) on `device`."""
    global _DEVICE
    before, _DEVICE = _DEVICE, device
    try:
        yield
    finally:
        _DEVICE = before


def device() -> str:
    return _DEVICE


def to_device(t: Any) -> Any:
    """A tensor or module on the device in force (tensors are drawn on the CPU, from seeded
    CPU generators, so the same seed gives the same values on either)."""
    return t if _DEVICE == "cpu" else t.to(_DEVICE)


def synchronize() -> None:
    """Wait for the device's queued kernels (a GPU runs them asynchronously): before a clock is
    read."""
    if _DEVICE != "cpu":
        import torch

        torch.cuda.synchronize()


def cuda_missing() -> str | None:
    """Why PyTorch cannot train on a GPU here, in one line; None when it can."""
    why = torch_missing()
    if why is not None:
        return why
    import torch

    if not torch.cuda.is_available():
        return f"this PyTorch ({torch.__version__}) sees no CUDA device"
    return None


def flush_denormals() -> None:
    """Denormal floats to zero, for every torch op memprobe times (replayed kernels and steps alike).
    A network trained on one fixed synthetic batch soon predicts it almost surely: a softmax
    over GPT-2's 50,257 tokens then yields denormal probabilities, which x86 handles in
    microcode. GPT-2 small's backward at sequence 128 took 3.9 s a step with denormals, 0.8-0.95 s
    without, on the 2-vCPU Xeon guest. Flushing them is PyTorch's own advice for CPU training."""
    import torch

    torch.set_flush_denormal(True)


def build(spec: CnnSpec | TransformerSpec, seed: int = 0) -> Any:
    """The network for a spec, its weights drawn from `seed`."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    flush_denormals()
    torch.manual_seed(seed)

    class Bottleneck(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            q = max(1, c // 4)
            self.reduce, self.bn1 = nn.Conv2d(c, q, 1, bias=False), nn.BatchNorm2d(q)
            self.conv3x3, self.bn2 = nn.Conv2d(q, q, 3, padding=1, bias=False), nn.BatchNorm2d(q)
            self.expand, self.bn3 = nn.Conv2d(q, c, 1, bias=False), nn.BatchNorm2d(c)

        def forward(self, x):
            out = F.relu(self.bn1(self.reduce(x)))
            out = F.relu(self.bn2(self.conv3x3(out)))
            return F.relu(self.bn3(self.expand(out)) + x)

    class Cnn(nn.Module):
        def __init__(self, s: CnnSpec) -> None:
            super().__init__()
            self.stem, self.bn = nn.Conv2d(s.in_channels, s.channels, 3, padding=1, bias=False), nn.BatchNorm2d(s.channels)
            self.blocks = nn.Sequential(*[Bottleneck(s.channels) for _ in range(s.blocks)])
            self.head = nn.Linear(s.channels, s.classes)

        def forward(self, x):
            x = self.blocks(F.relu(self.bn(self.stem(x))))
            return self.head(x.mean((2, 3)))

        def loss_of(self, out, y):
            return F.cross_entropy(out, y)

        def loss(self, x, y):
            return self.loss_of(self(x), y)

    class ResBlock(nn.Module):
        """torchvision's Bottleneck (the stride on the 3x3), ReLU out of place."""

        def __init__(self, cin: int, q: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, q, 1, bias=False), nn.BatchNorm2d(q)
            self.conv2, self.bn2 = nn.Conv2d(q, q, 3, stride, 1, bias=False), nn.BatchNorm2d(q)
            self.conv3, self.bn3 = nn.Conv2d(q, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else None)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = F.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return F.relu(out + (x if self.down is None else self.down(x)))

    class ResNet(nn.Module):
        def __init__(self, s: ResNetSpec) -> None:
            super().__init__()
            c0 = s.stem_channels
            self.stem, self.bn = nn.Conv2d(s.in_channels, c0, 7, 2, 3, bias=False), nn.BatchNorm2d(c0)
            self.blocks = nn.Sequential(*[ResBlock(cin, q, cout, st) for _, cin, q, cout, _, st in resnet_blocks(s)])
            self.head = nn.Linear(s.widths[-1], s.classes)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.bn(self.stem(x))), 3, 2, 1)
            return self.head(self.blocks(x).mean((2, 3)))

        def loss_of(self, out, y):
            return F.cross_entropy(out, y)

        def loss(self, x, y):
            return self.loss_of(self(x), y)

    class Block(nn.Module):
        def __init__(self, s: TransformerSpec) -> None:
            super().__init__()
            d = s.width
            self.heads, self.scale = s.heads, 1.0 / math.sqrt(d // s.heads)
            self.ln1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ln2, self.fc, self.fc_out = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x, mask):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            att = (q * self.scale) @ k.transpose(-2, -1)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).contiguous().view(b, t, d)
            x = x + self.proj(y)
            return x + self.fc_out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class Transformer(nn.Module):
        def __init__(self, s: TransformerSpec) -> None:
            super().__init__()
            self.tok, self.pos = nn.Embedding(s.vocab, s.width), nn.Embedding(s.positions, s.width)
            self.layers = nn.ModuleList([Block(s) for _ in range(s.layers)])
            self.ln_f, self.head = nn.LayerNorm(s.width), nn.Linear(s.width, s.vocab, bias=not s.tied)
            if s.tied:
                self.head.weight = self.tok.weight
            self.register_buffer("positions", torch.arange(s.seq), persistent=False)
            self.register_buffer("mask", ~torch.ones(s.seq, s.seq, dtype=torch.bool).tril(), persistent=False)
            self.vocab = s.vocab

        def forward(self, idx):
            x = self.tok(idx) + self.pos(self.positions)
            for layer in self.layers:
                x = layer(x, self.mask)
            return self.head(self.ln_f(x))

        def loss_of(self, out, targets):
            return F.cross_entropy(out.view(-1, self.vocab), targets.view(-1))

        def loss(self, idx, targets):
            return self.loss_of(self(idx), targets)

    if isinstance(spec, ResNetSpec):
        return to_device(ResNet(spec))
    return to_device(Cnn(spec) if isinstance(spec, CnnSpec) else Transformer(spec))


def batch(spec: CnnSpec | TransformerSpec, seed: int = 1) -> tuple[Any, Any]:
    """A synthetic batch: random images and labels, or random tokens and next tokens."""
    import torch

    g = torch.Generator().manual_seed(seed)
    if isinstance(spec, CnnSpec):
        x = torch.randn(spec.batch, spec.in_channels, spec.resolution, spec.resolution, generator=g)
        return to_device(x), to_device(torch.randint(0, spec.classes, (spec.batch,), generator=g))
    tokens = torch.randint(0, spec.vocab, (spec.batch, spec.seq + 1), generator=g)
    return to_device(tokens[:, :-1].contiguous()), to_device(tokens[:, 1:].contiguous())


def step_parts(spec: CnnSpec | TransformerSpec, seed: int = 0) -> tuple[Any, Any, Any]:
    """(model, inputs, loss_fn) of one training step of `spec`, as `capture.capture_step` and
    `capture.run_step` take them: the network (`build`), its synthetic batch (`batch`) and the
    cross-entropy on the batch's labels (the model's own `loss`)."""
    model = build(spec, seed)
    x, y = batch(spec, seed + 1)
    return model, x, (lambda out: model.loss_of(out, y))


def optimizer_name(spec: CnnSpec | TransformerSpec) -> str:
    """The family's optimizer, as `capture.make_optimizer` names it: SGD with momentum for a
    CNN, AdamW for a transformer."""
    return "sgd" if isinstance(spec, CnnSpec) else "adamw"


def optimizer(spec: CnnSpec | TransformerSpec, model: Any, lr: float | None = None) -> Any:
    import torch

    if isinstance(spec, CnnSpec):
        return torch.optim.SGD(model.parameters(), lr=lr or 0.05, momentum=0.9)
    return torch.optim.AdamW(model.parameters(), lr=lr or 3e-3)


def train_steps(spec: CnnSpec | TransformerSpec, steps: int, seed: int = 0) -> list[float]:
    """Train for `steps` steps on one fixed synthetic batch; the loss after each step."""
    model = build(spec, seed)
    model.train()
    x, y = batch(spec, seed + 1)
    opt = optimizer(spec, model)
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x, y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def profile_step(spec: CnnSpec | TransformerSpec, seed: int = 0) -> dict[str, int]:
    """How often the profiler records each ATen operator in one steady training step
    (`capture.run_step`, the family's optimizer as `capture.make_optimizer` builds it, after two
    steps), by operator name without "aten::": for the test that holds the capture to it."""
    from collections import Counter

    from torch.profiler import ProfilerActivity, profile

    from memprobe.train import capture as C

    model, x, loss_fn = step_parts(spec, seed)
    model.train()
    opt = C.make_optimizer(optimizer_name(spec), [p for p in model.parameters() if p.requires_grad])
    for _ in range(2):
        C.run_step(model, x, loss_fn, opt)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        C.run_step(model, x, loss_fn, opt)
    return dict(Counter(e.name.removeprefix("aten::") for e in prof.events() if e.name.startswith("aten::")))
