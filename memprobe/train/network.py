"""The training study's workload (beside stage 4 of the flow: result -> **train** -> report).

The reference network: an MLP of dense layers (square W x W for the sweep, 784-...-10 for the
MNIST-shaped run) with ReLU, softmax cross-entropy, and a plain SGD update, fp32, on synthetic
data already in memory. One step is a fixed list of ops, the same list `model.step_ops` counts:

  forward   for each layer i: GEMM Z_i = A_{i-1} @ W_i, then bias+ReLU in place (the last layer:
            bias + softmax cross-entropy, which also writes the logits' gradient)
  backward  bias gradient of the last layer; for each layer i from the last: GEMM
            dW_i = A_{i-1}^T @ dZ_i, and unless i is the first, GEMM dA_{i-1} = dZ_i @ W_i^T then
            ReLU-backward + bias gradient in place
  update    one fused SGD call per layer (weights and bias)

Backends: "numpy" (CPU; GEMMs through NumPy's BLAS, elementwise as Numba @njit kernels, a serial
and a prange build of the same source), "cuda" (CuPy/cuBLAS GEMMs and numba.cuda elementwise
kernels taking CuPy arrays through __cuda_array_interface__; with NUMBA_ENABLE_CUDASIM=1 and no
CuPy, NumPy stands in so the logic runs anywhere at tiny sizes), and "torch" (torch.nn layers and
torch.optim.SGD, when torch imports). Kernels never time themselves: `time_steps` does.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from functools import partial
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numba
import numpy as np
from numba import njit, prange

DTYPE = np.float32
ITEM_BYTES = 4
# below this many elements a prange kernel costs more in thread wake-up than it saves: 256 Ki
# fp32 elements take about five wake-ups' time on one core at L3 speed (the figures, for a 2-vCPU
# AMD EPYC Zen 3 KVM guest, are in docs/validation.md, "Training prediction")
PARALLEL_MIN_ELEMENTS = 1 << 18


# ---- shapes and data -------------------------------------------------------------------------
@dataclass(frozen=True)
class NetShape:
    """Layer sizes d0..dL (d0 inputs, dL classes) and the batch size."""

    dims: tuple[int, ...]
    batch: int

    @classmethod
    def square(cls, width: int, layers: int, batch: int) -> "NetShape":
        return cls(dims=(width,) * (layers + 1), batch=batch)

    @property
    def layers(self) -> int:
        return len(self.dims) - 1

    @property
    def n_params(self) -> int:
        return sum(a * b + b for a, b in zip(self.dims[:-1], self.dims[1:]))


def synthetic_task(n_samples: int, n_in: int, n_classes: int, seed: int = 0,
                   dtype: Any = DTYPE) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels of a separable task: labels are the argmax of a random linear teacher,
    so the network can drive the loss down (the 'it really learns' test uses this)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_in), dtype=np.float32).astype(dtype, copy=False)
    teacher = rng.standard_normal((n_in, n_classes), dtype=np.float32)
    labels = np.argmax(x.astype(np.float32) @ teacher, axis=1).astype(np.int32)
    return x, labels


def init_params(shape: NetShape, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-initialised (W, b) per layer, host arrays (backends copy them where they need)."""
    rng = np.random.default_rng(seed)
    out = []
    for d_in, d_out in zip(shape.dims[:-1], shape.dims[1:]):
        w = (rng.standard_normal((d_in, d_out), dtype=np.float32) * math.sqrt(2.0 / d_in)).astype(DTYPE)
        out.append((w, np.zeros(d_out, dtype=DTYPE)))
    return out


# ---- CPU elementwise kernels (one source, a serial and a prange build) ------------------------
COL_BLOCK = 512  # columns per parallel task in the column-sum kernels (one db slice per task)


def _bias_relu(z, b):
    # in place: z = max(z + b, 0); the result is the saved activation (its sign is the mask).
    # Row slices: LLVM vectorises the inner loop only when it sees one row at a time
    n, m = z.shape
    for i in prange(n):
        zr = z[i]
        for j in range(m):
            v = zr[j] + b[j]
            zr[j] = v if v > 0.0 else np.float32(0.0)


def _softmax_xent(z, b, labels, dz):
    # logits z (+ bias) -> dz = (softmax - onehot) / n; returns the summed loss
    n, m = z.shape
    inv_n = np.float32(1.0 / n)
    loss = 0.0
    for i in prange(n):
        zr = z[i]
        dr = dz[i]
        mx = zr[0] + b[0]
        for j in range(1, m):
            mx = max(mx, zr[j] + b[j])
        s = np.float32(0.0)
        for j in range(m):
            e = np.exp(zr[j] + b[j] - mx)
            dr[j] = e
            s += e
        scale = np.float32(inv_n / s)
        for j in range(m):
            dr[j] = dr[j] * scale
        lab = labels[i]
        p = dr[lab] * n
        dr[lab] -= inv_n
        loss += -np.log(max(p, 1e-30))
    return loss


def _bias_grad(dz, db):
    # db = column sums of dz; parallel over column blocks so tasks never share a db slot
    n, m = dz.shape
    nblk = (m + COL_BLOCK - 1) // COL_BLOCK
    for jb in prange(nblk):
        j0 = jb * COL_BLOCK
        j1 = min(j0 + COL_BLOCK, m)
        dbb = db[j0:j1]
        for j in range(j1 - j0):
            dbb[j] = 0.0
        for i in range(n):
            dr = dz[i, j0:j1]
            for j in range(j1 - j0):
                dbb[j] += dr[j]


def _relu_bwd_bias_grad(da, a, db):
    # in place: dz = da * (a > 0); db = column sums of dz (one pass, column blocks)
    n, m = da.shape
    nblk = (m + COL_BLOCK - 1) // COL_BLOCK
    for jb in prange(nblk):
        j0 = jb * COL_BLOCK
        j1 = min(j0 + COL_BLOCK, m)
        dbb = db[j0:j1]
        for j in range(j1 - j0):
            dbb[j] = 0.0
        for i in range(n):
            dr = da[i, j0:j1]
            ar = a[i, j0:j1]
            for j in range(j1 - j0):
                v = dr[j] if ar[j] > 0.0 else np.float32(0.0)
                dr[j] = v
                dbb[j] += v


def _sgd_update(w, gw, b, gb, lr):
    # flat views: w -= lr * gw; b -= lr * gb (one call per layer)
    lr32 = np.float32(lr)
    for k in prange(w.size):
        w[k] -= lr32 * gw[k]
    for k in range(b.size):
        b[k] -= lr32 * gb[k]


def _empty(a):
    # the per-call overhead probe: a call that does nothing with an array argument
    return None


def _empty_parallel(a):
    # a has one element per thread: every thread wakes, does nothing, joins
    s = 0.0
    for k in prange(a.size):
        s += a[k]
    return s


_KERNEL_SOURCES: dict[str, Callable] = {
    "bias_relu": _bias_relu,
    "softmax_xent": _softmax_xent,
    "bias_grad": _bias_grad,
    "relu_bwd_bias_grad": _relu_bwd_bias_grad,
    "sgd_update": _sgd_update,
    "empty": _empty,
    "empty_parallel": _empty_parallel,
}
SERIAL = {k: njit(cache=True, fastmath=False)(f) for k, f in _KERNEL_SOURCES.items()}
PARALLEL = {k: njit(cache=True, parallel=True)(f) for k, f in _KERNEL_SOURCES.items() if k != "empty"}


# ---- BLAS thread control ----------------------------------------------------------------------
@contextmanager
def cpu_threads(n: int) -> Iterator[str]:
    """Run the block with n BLAS threads, n OpenMP threads (a framework's intra-op pool) and n
    Numba threads; yields how the libraries were limited.

    Why not OPENBLAS_NUM_THREADS: it is read once, when NumPy loads, so changing it per sweep
    point would need a subprocess per thread count (a fresh interpreter, imports and JIT cache
    loads each time). threadpoolctl finds the BLAS and OpenMP runtimes this process loaded and
    calls their own runtime setters."""
    from threadpoolctl import threadpool_info, threadpool_limits

    prev_numba = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        with threadpool_limits(limits=n, user_api="blas"), threadpool_limits(limits=n, user_api="openmp"):
            # "none": no BLAS loaded for threadpoolctl to limit (the sweep warns about it)
            yield "threadpoolctl" if any(p["user_api"] == "blas" for p in threadpool_info()) else "none"
    finally:
        numba.set_num_threads(prev_numba)


def max_threads() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)


# ---- the CPU network ---------------------------------------------------------------------------
class CpuNetwork:
    """The reference MLP on the CPU: NumPy BLAS GEMMs into preallocated buffers, Numba kernels
    for everything elementwise. `threads` picks the serial or prange build of each kernel.

    A step is a prebuilt list of bound calls (one per op, views made once), so what a step costs
    beyond its work is the calls themselves: the per-op overhead the model measures the same way.
    Inputs other than the network's own batch buffer are copied in first (the data-loading op)."""

    backend = "numpy"

    def __init__(self, shape: NetShape, lr: float = 0.05, seed: int = 0, threads: int = 1) -> None:
        self.shape, self.lr, self.threads = shape, float(lr), int(threads)
        self.params = init_params(shape, seed)
        B = shape.batch
        self.grads = [(np.zeros_like(w), np.zeros_like(b)) for w, b in self.params]
        self.acts = [np.zeros((B, d), DTYPE) for d in shape.dims[1:]]  # A_1..A_{L-1}, logits Z_L
        self.deltas = [np.zeros((B, d), DTYPE) for d in shape.dims[1:]]  # dZ_1..dZ_L
        self.x = np.zeros((B, shape.dims[0]), DTYPE)
        self.labels = np.zeros(B, np.int32)
        self._loss = [0.0]
        self._plans: dict[int, list[Callable[[], Any]]] = {}

    def _k(self, name: str, n_elements: int) -> Callable:
        return (PARALLEL if self.kernel_dispatch(name, n_elements) == "parallel" else SERIAL)[name]

    def kernel_dispatch(self, name: str, n_elements: int) -> str:
        """'parallel' or 'serial': which build a kernel call of this size uses (the model needs
        it to pick the matching measured call overhead)."""
        return "parallel" if (self.threads > 1 and n_elements >= PARALLEL_MIN_ELEMENTS) else "serial"

    def _plan(self, n: int) -> list[Callable[[], Any]]:
        """The step's calls for n rows, in the order model.step_ops lists the ops."""
        L = self.shape.layers
        x, labels = self.x[:n], self.labels[:n]
        plan: list[Callable[[], Any]] = []
        a_prev = x
        for i, (w, b) in enumerate(self.params):
            z = self.acts[i][:n]
            plan.append(partial(np.matmul, a_prev, w, out=z))
            if i < L - 1:
                plan.append(partial(self._k("bias_relu", z.size), z, b))
            else:
                k, dz, box = self._k("softmax_xent", z.size), self.deltas[i][:n], self._loss

                def softmax(k=k, z=z, b=b, dz=dz, box=box) -> None:
                    box[0] = k(z, b, labels, dz)
                plan.append(softmax)
            a_prev = z
        dzl = self.deltas[L - 1][:n]
        plan.append(partial(self._k("bias_grad", dzl.size), dzl, self.grads[L - 1][1]))
        for i in range(L - 1, -1, -1):
            dz = self.deltas[i][:n]
            a_in = x if i == 0 else self.acts[i - 1][:n]
            plan.append(partial(np.matmul, a_in.T, dz, out=self.grads[i][0]))
            if i > 0:
                da = self.deltas[i - 1][:n]
                plan.append(partial(np.matmul, dz, self.params[i][0].T, out=da))
                plan.append(partial(self._k("relu_bwd_bias_grad", da.size), da, self.acts[i - 1][:n],
                                    self.grads[i - 1][1]))
        for (w, b), (gw, gb) in zip(self.params, self.grads):
            plan.append(partial(self._k("sgd_update", w.size), w.reshape(-1), gw.reshape(-1), b, gb, self.lr))
        return plan

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        """One SGD step on x (n <= batch rows); returns the mean loss."""
        n = x.shape[0]
        if x is not self.x:  # the data-loading op: copy the batch into the network's buffer
            np.copyto(self.x[:n], x)
            np.copyto(self.labels[:n], labels)
        plan = self._plans.get(n)
        if plan is None:
            plan = self._plans[n] = self._plan(n)
        for call in plan:
            call()
        return float(self._loss[0]) / n

    def sync(self) -> None:
        return None

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, list]:
        """Loss and gradients without updating (for the finite-difference check)."""
        lr = self.lr
        saved = [(w.copy(), b.copy()) for w, b in self.params]
        self.lr, self._plans = 0.0, {}
        try:
            loss = self.step(x, labels)
        finally:
            self.lr, self._plans = lr, {}
            for (w, b), (w0, b0) in zip(self.params, saved):
                w[...] = w0
                b[...] = b0
        return loss, [(gw.copy(), gb.copy()) for gw, gb in self.grads]


def reference_loss(params: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, labels: np.ndarray) -> float:
    """Plain float64 NumPy forward pass: the oracle for the gradient check."""
    a = x.astype(np.float64)
    for i, (w, b) in enumerate(params):
        z = a @ w.astype(np.float64) + b.astype(np.float64)
        a = np.maximum(z, 0.0) if i < len(params) - 1 else z
    z = a - a.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


# ---- GPU backend (CuPy GEMMs + numba.cuda kernels) ---------------------------------------------
def cuda_simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def gpu_array_module() -> Any:
    """CuPy when it imports; under the CUDA simulator without CuPy, NumPy stands in (host arrays
    are what the simulator's kernels take). None when neither works."""
    try:
        import cupy  # type: ignore

        return cupy
    except Exception:
        return np if cuda_simulated() else None


def cuda_arrays_usable() -> bool:
    """Whether the GPU training backend can run: numba.cuda answers and CuPy (or, under the
    simulator, NumPy) holds its arrays. Not the same question as platform.gpu.gpu_available."""
    try:
        from numba import cuda

        return bool(cuda.is_available()) and gpu_array_module() is not None
    except Exception:
        return False


_CUDA_KERNELS: dict[str, Any] = {}
cuda: Any = None  # numba.cuda, imported on first use of the GPU backend


def _cuda_kernels() -> dict[str, Any]:
    """numba.cuda builds of the elementwise ops, compiled on first use (guarded import)."""
    global cuda
    if _CUDA_KERNELS:
        return _CUDA_KERNELS
    # a module global, not a local: the CUDA simulator swaps the kernels' global `cuda`
    from numba import cuda

    @cuda.jit
    def bias_relu(z, b):
        i, j = cuda.grid(2)
        if i < z.shape[0] and j < z.shape[1]:
            v = z[i, j] + b[j]
            z[i, j] = v if v > 0.0 else 0.0

    @cuda.jit
    def softmax_xent(z, b, labels, dz, loss):
        i = cuda.grid(1)  # one thread per row: the class count is small in this study's runs
        n, m = z.shape
        if i < n:
            mx = z[i, 0] + b[0]
            for j in range(1, m):
                mx = max(mx, z[i, j] + b[j])
            s = 0.0
            for j in range(m):
                e = math.exp(z[i, j] + b[j] - mx)
                dz[i, j] = e
                s += e
            for j in range(m):
                dz[i, j] = dz[i, j] / s / n
            lab = labels[i]
            p = dz[i, lab] * n
            dz[i, lab] -= 1.0 / n
            cuda.atomic.add(loss, 0, -math.log(max(p, 1e-30)))

    @cuda.jit
    def bias_grad(dz, db):
        j = cuda.grid(1)
        if j < dz.shape[1]:
            s = 0.0
            for i in range(dz.shape[0]):
                s += dz[i, j]
            db[j] = s

    @cuda.jit
    def relu_bwd_bias_grad(da, a, db):
        j = cuda.grid(1)
        if j < da.shape[1]:
            s = 0.0
            for i in range(da.shape[0]):
                v = da[i, j] if a[i, j] > 0.0 else 0.0
                da[i, j] = v
                s += v
            db[j] = s

    @cuda.jit
    def sgd_update(w, gw, b, gb, lr):
        k = cuda.grid(1)
        if k < w.size:
            w[k] -= lr * gw[k]
        if k < b.size:
            b[k] -= lr * gb[k]

    @cuda.jit
    def empty(a):
        pass

    _CUDA_KERNELS.update(bias_relu=bias_relu, softmax_xent=softmax_xent, bias_grad=bias_grad,
                         relu_bwd_bias_grad=relu_bwd_bias_grad, sgd_update=sgd_update, empty=empty)
    return _CUDA_KERNELS


def _grid1(n: int, tpb: int = 256) -> tuple[int, int]:
    if cuda_simulated():  # the simulator runs one Python thread per CUDA thread: keep blocks tiny
        tpb = 4
    return (max(1, (n + tpb - 1) // tpb), tpb)


def _grid2(n: int, m: int) -> tuple[tuple[int, int], tuple[int, int]]:
    t = 2 if cuda_simulated() else 16
    return ((max(1, (n + t - 1) // t), max(1, (m + t - 1) // t)), (t, t))


class GpuNetwork:
    """The reference MLP on an NVIDIA GPU: CuPy GEMMs (cuBLAS), numba.cuda elementwise kernels on
    the same device arrays (zero-copy through __cuda_array_interface__)."""

    backend = "cuda"

    def __init__(self, shape: NetShape, lr: float = 0.05, seed: int = 0, threads: int = 0) -> None:
        xp = gpu_array_module()
        if xp is None:
            raise RuntimeError("the GPU backend needs CuPy (or NUMBA_ENABLE_CUDASIM=1 for tests)")
        self.xp, self.shape, self.lr, self.threads = xp, shape, float(lr), threads
        self.k = _cuda_kernels()
        self.params = [(xp.asarray(w), xp.asarray(b)) for w, b in init_params(shape, seed)]
        B = shape.batch
        self.grads = [(xp.zeros_like(w), xp.zeros_like(b)) for w, b in self.params]
        self.acts = [xp.zeros((B, d), DTYPE) for d in shape.dims[1:]]
        self.deltas = [xp.zeros((B, d), DTYPE) for d in shape.dims[1:]]
        self.loss_buf = xp.zeros(1, np.float32)

    def kernel_dispatch(self, name: str, n_elements: int) -> str:
        return "kernel"

    def step(self, x: Any, labels: Any, want_loss: bool = False) -> float:
        xp, k = self.xp, self.k
        n = x.shape[0]
        L = self.shape.layers
        a_prev = x
        for i, (w, b) in enumerate(self.params):
            z = self.acts[i][:n]
            xp.matmul(a_prev, w, out=z)
            if i < L - 1:
                g, t = _grid2(*z.shape)
                k["bias_relu"][g, t](z, b)
            else:
                self.loss_buf[...] = 0
                g, t = _grid1(n)
                k["softmax_xent"][g, t](z, b, labels, self.deltas[i][:n], self.loss_buf)
            a_prev = z
        dzl = self.deltas[L - 1][:n]
        g, t = _grid1(dzl.shape[1])
        k["bias_grad"][g, t](dzl, self.grads[L - 1][1])
        for i in range(L - 1, -1, -1):
            dz = self.deltas[i][:n]
            a_in = x if i == 0 else self.acts[i - 1][:n]
            xp.matmul(a_in.T, dz, out=self.grads[i][0])
            if i > 0:
                da = self.deltas[i - 1][:n]
                xp.matmul(dz, self.params[i][0].T, out=da)
                g, t = _grid1(da.shape[1])
                k["relu_bwd_bias_grad"][g, t](da, self.acts[i - 1][:n], self.grads[i - 1][1])
        for (w, b), (gw, gb) in zip(self.params, self.grads):
            g, t = _grid1(max(w.size, b.size))
            k["sgd_update"][g, t](w.reshape(-1), gw.reshape(-1), b, gb, np.float32(self.lr))
        if want_loss:
            return float(self.loss_buf[0]) / n  # a device-to-host copy: only when asked
        return math.nan

    def sync(self) -> None:
        if self.xp is not np:
            self.xp.cuda.runtime.deviceSynchronize()

    def to_device(self, a: np.ndarray) -> Any:
        return self.xp.asarray(a)

    def host_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        to_host = (lambda a: a) if self.xp is np else (lambda a: self.xp.asnumpy(a))
        return [(np.array(to_host(w)), np.array(to_host(b))) for w, b in self.params]


# ---- torch backend (optional) ------------------------------------------------------------------
def torch_available() -> bool:
    try:
        import torch  # noqa: F401

        return True
    except Exception:
        return False


class TorchNetwork:
    """The same shapes in PyTorch (nn.Linear + ReLU, cross-entropy, torch.optim.SGD), so users see
    how far their own framework sits from the ceilings."""

    backend = "torch"

    def __init__(self, shape: NetShape, lr: float = 0.05, seed: int = 0, threads: int = 1,
                 device: str = "cpu") -> None:
        import torch

        self.torch, self.shape, self.device, self.threads = torch, shape, device, threads
        layers: list[Any] = []
        for i, (w, b) in enumerate(init_params(shape, seed)):
            lin = torch.nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if i < shape.layers - 1:
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers).to(device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr)
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def kernel_dispatch(self, name: str, n_elements: int) -> str:
        return "torch"

    def to_device(self, a: np.ndarray) -> Any:
        t = self.torch.from_numpy(a)
        return t.long().to(self.device) if a.dtype.kind == "i" else t.to(self.device)

    def step(self, x: Any, labels: Any, want_loss: bool = True) -> float:
        self.opt.zero_grad(set_to_none=False)
        loss = self.loss_fn(self.net(x), labels)
        loss.backward()
        self.opt.step()
        return float(loss.detach()) if want_loss else math.nan

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


# ---- construction and timing -------------------------------------------------------------------
def make_network(shape: NetShape, device: str = "cpu", framework: str = "numpy", threads: int = 1,
                 lr: float = 0.05, seed: int = 0) -> Any:
    """The network for a device ("cpu" | "gpu") and framework ("numpy" | "torch")."""
    if framework == "torch":
        if not torch_available():
            raise RuntimeError("framework 'torch' asked for, but torch does not import (pip install memprobe[torch])")
        return TorchNetwork(shape, lr, seed, threads, device="cuda" if device == "gpu" else "cpu")
    if framework != "numpy":
        raise ValueError(f"unknown framework {framework!r} (numpy | torch)")
    if device == "gpu":
        return GpuNetwork(shape, lr, seed)
    return CpuNetwork(shape, lr, seed, threads)


def batch_data(net: Any, shape: NetShape, seed: int = 1) -> tuple[Any, Any]:
    """One synthetic batch on the network's device (the sweep reuses it: data in memory)."""
    x, labels = synthetic_task(shape.batch, shape.dims[0], shape.dims[-1], seed=seed)
    if isinstance(net, CpuNetwork):  # the network's own input buffer: no data-loading copy
        net.x[...] = x
        net.labels[...] = labels
        return net.x, net.labels
    if hasattr(net, "to_device"):
        return net.to_device(x), net.to_device(labels)
    return x, labels


def time_steps(net: Any, x: Any, labels: Any, steps: int, warmup: int = 2) -> list[float]:
    """Seconds per step for `steps` steps after `warmup` untimed ones. On a real GPU, CUDA
    events around each step (device time, launches queued asynchronously); elsewhere
    perf_counter around a synchronised step."""
    for _ in range(warmup):
        net.step(x, labels)
    net.sync()
    use_events = isinstance(net, GpuNetwork) and net.xp is not np
    out: list[float] = []
    if use_events:
        from numba import cuda

        for _ in range(steps):
            e0, e1 = cuda.event(), cuda.event()
            e0.record()
            net.step(x, labels)
            e1.record()
            e1.synchronize()
            out.append(cuda.event_elapsed_time(e0, e1) * 1e-3)
        return out
    for _ in range(steps):
        t0 = time.perf_counter()
        net.step(x, labels)
        net.sync()
        out.append(time.perf_counter() - t0)
    return out
