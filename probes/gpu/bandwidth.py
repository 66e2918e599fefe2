"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): GPU bandwidth.

Many-thread streaming kernels as a table (BabelStream's `bench[]`): each entry names the
kernel and how many float64 arrays it reads and writes per element, so bytes moved are counted
as STREAM counts them (bytes read + bytes written). Two placements of the working set:

  * grid mode (`n_local == 0`): grid-stride loop over the whole arrays; the grid is sized for
    full occupancy (SMs x max threads per SM). Working set sized to L2 or to HBM.
  * block mode (`n_local > 0`): block b streams only its own `n_local` elements; with the
    working set per block below the L1 size this measures L1 (which is per SM).

Each launch makes `passes` passes over its working set so a small (L1/L2) set is timed over
milliseconds, not microseconds. Shared memory has its own two kernels (latency chase and
conflict-free streaming read). Kernels return nothing but their outputs; `BandwidthProbe.run`
returns seconds per launch; scan/gpu.py turns seconds and bytes into GB/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import cuda, float32, uint32

from memprobe.probes.cpu.chase import sattolo_cycle
from memprobe.probes.gpu.clock import clock64, time_launches
from memprobe.probes.kernels import ITEM_BYTES, STREAM_KERNELS, StreamKernelSpec
from memprobe.probes.protocol import check
TRIAD_SCALAR = 0.4


@cuda.jit
def read_kernel(a, b, c, out, n_local, passes):
    # this thread's span: its block's slice (block mode) or the whole grid-stride range
    # (written out in each kernel, not a device function, so PTX builds without a driver)
    if n_local > 0:
        i0 = cuda.blockIdx.x * n_local + cuda.threadIdx.x
        end = min((cuda.blockIdx.x + 1) * n_local, a.shape[0])
        step = cuda.blockDim.x
    else:
        i0 = cuda.grid(1)
        end = a.shape[0]
        step = cuda.gridsize(1)
    s = 0.0
    for _ in range(passes):
        i = i0
        while i < end:
            s += a[i]
            i += step
    out[cuda.grid(1)] = s  # one value per thread keeps every load alive


@cuda.jit
def write_kernel(a, b, c, out, n_local, passes):
    # this thread's span: its block's slice (block mode) or the whole grid-stride range
    # (written out in each kernel, not a device function, so PTX builds without a driver)
    if n_local > 0:
        i0 = cuda.blockIdx.x * n_local + cuda.threadIdx.x
        end = min((cuda.blockIdx.x + 1) * n_local, a.shape[0])
        step = cuda.blockDim.x
    else:
        i0 = cuda.grid(1)
        end = a.shape[0]
        step = cuda.gridsize(1)
    for r in range(passes):
        v = 1.0 + r  # differs per pass: no pass is a dead store
        i = i0
        while i < end:
            a[i] = v
            i += step


@cuda.jit
def copy_kernel(a, b, c, out, n_local, passes):
    # this thread's span: its block's slice (block mode) or the whole grid-stride range
    # (written out in each kernel, not a device function, so PTX builds without a driver)
    if n_local > 0:
        i0 = cuda.blockIdx.x * n_local + cuda.threadIdx.x
        end = min((cuda.blockIdx.x + 1) * n_local, a.shape[0])
        step = cuda.blockDim.x
    else:
        i0 = cuda.grid(1)
        end = a.shape[0]
        step = cuda.gridsize(1)
    for _ in range(passes):
        i = i0
        while i < end:
            c[i] = a[i]
            i += step


@cuda.jit
def triad_kernel(a, b, c, out, n_local, passes):
    # this thread's span: its block's slice (block mode) or the whole grid-stride range
    # (written out in each kernel, not a device function, so PTX builds without a driver)
    if n_local > 0:
        i0 = cuda.blockIdx.x * n_local + cuda.threadIdx.x
        end = min((cuda.blockIdx.x + 1) * n_local, a.shape[0])
        step = cuda.blockDim.x
    else:
        i0 = cuda.grid(1)
        end = a.shape[0]
        step = cuda.gridsize(1)
    for _ in range(passes):
        i = i0
        while i < end:
            a[i] = b[i] + TRIAD_SCALAR * c[i]
            i += step


@dataclass(frozen=True)
class StreamKernel:
    """A table entry (probes/kernels.py) with this backend's implementation."""

    spec: StreamKernelSpec
    kernel: object

    name = property(lambda self: self.spec.name)
    reads = property(lambda self: self.spec.reads)
    writes = property(lambda self: self.spec.writes)
    arrays = property(lambda self: self.spec.arrays)
    bytes_per_element = property(lambda self: self.spec.bytes_per_element)


_IMPLEMENTATIONS = {"read": read_kernel, "write": write_kernel, "copy": copy_kernel, "triad": triad_kernel}
# the cached kernels (no non-temporal stores on the GPU)
KERNELS: tuple[StreamKernel, ...] = tuple(
    StreamKernel(spec, _IMPLEMENTATIONS[spec.name]) for spec in STREAM_KERNELS if spec.name in _IMPLEMENTATIONS)
KERNELS_BY_NAME = {k.name: k for k in KERNELS}


@dataclass(frozen=True)
class Launch:
    blocks: int
    threads: int


def full_occupancy(sm_count: int, max_threads_per_sm: int, threads_per_block: int = 256) -> Launch:
    """Enough resident threads to fill every SM (these kernels use few registers)."""
    tpb = min(threads_per_block, max_threads_per_sm)
    return Launch(blocks=sm_count * max(1, max_threads_per_sm // tpb), threads=tpb)


class BandwidthProbe:
    """setup(kernel, working_set_bytes, launch, block_local) allocates the arrays of one kernel
    (the working set split over them); run(passes, reps) returns seconds per launch;
    bytes_moved(passes) is what one launch moved; verify() checks one pass's output."""

    name = "bandwidth"
    backend = "cuda"

    def __init__(self) -> None:
        self.k: StreamKernel | None = None
        self.n_elements = 0
        self.n_local = 0
        self.launch = Launch(1, 1)
        self.arrays: list = []
        self.out = None

    def setup(self, kernel: str, working_set_bytes: int, launch: Launch, block_local: bool = False) -> None:
        self.k = KERNELS_BY_NAME[kernel]
        self.launch = launch
        n = max(launch.threads, int(working_set_bytes) // (ITEM_BYTES * self.k.arrays))
        if block_local:
            # each block its own slice of n_local elements; n_total = blocks x n_local
            self.n_local = max(launch.threads, n // launch.blocks)
            n = self.n_local * launch.blocks
        else:
            self.n_local = 0
        self.n_elements = n
        host = [np.full(n, 1.0 + 0.5 * j, dtype=np.float64) for j in range(3)]
        # arrays the kernel does not use stay 1 element (the kernel signature is shared)
        self.arrays = [cuda.to_device(host[j] if j < self.k.arrays else host[j][:1]) for j in range(3)]
        if self.k.name == "copy":  # copy reads a writes c: third slot holds c
            self.arrays[2] = cuda.to_device(np.zeros(n, dtype=np.float64))
            self.arrays[1] = cuda.to_device(host[1][:1])
        self.out = cuda.device_array(launch.blocks * launch.threads, dtype=np.float64)

    def _launch(self, passes: int) -> None:
        a, b, c = self.arrays
        self.k.kernel[self.launch.blocks, self.launch.threads](a, b, c, self.out, self.n_local, passes)

    def run(self, passes: int, repetitions: int) -> list[float]:
        assert self.k is not None, "setup() first"
        return time_launches(lambda: self._launch(passes), repetitions)

    def bytes_moved(self, passes: int) -> int:
        assert self.k is not None
        return self.n_elements * self.k.bytes_per_element * passes

    def verify(self) -> bool:
        """Reset inputs, run one pass, check the outputs against numpy (apart from timing);
        raises ProbeError when they differ."""
        return check(self._output_right(), f"the GPU {self.k.name if self.k else '?'} kernel gave wrong values")

    def _output_right(self) -> bool:
        assert self.k is not None
        n = self.n_elements
        a0 = np.arange(n, dtype=np.float64) % 7 + 1.0
        b0 = np.arange(n, dtype=np.float64) % 5 + 2.0
        name = self.k.name
        if name == "read":
            self.arrays[0] = cuda.to_device(a0)
            self._launch(1)
            return bool(np.isclose(self.out.copy_to_host().sum(), a0.sum()))
        if name == "write":
            self.arrays[0] = cuda.to_device(np.zeros(n))
            self._launch(2)
            return bool(np.all(self.arrays[0].copy_to_host() == 2.0))
        if name == "copy":
            self.arrays[0] = cuda.to_device(a0)
            self.arrays[2] = cuda.to_device(np.zeros(n))
            self._launch(1)
            return bool(np.array_equal(self.arrays[2].copy_to_host(), a0))
        # triad
        self.arrays = [cuda.to_device(np.zeros(n)), cuda.to_device(a0), cuda.to_device(b0)]
        self._launch(1)
        return bool(np.allclose(self.arrays[0].copy_to_host(), a0 + TRIAD_SCALAR * b0))

    def close(self) -> None:
        self.arrays, self.out = [], None  # numba frees device memory with the last reference


# ---- shared memory ---------------------------------------------------------------------------
SMEM_CHASE_SLOTS = 1024  # 4 KiB of uint32 indices (compile-time: shared arrays need a constant)
SMEM_READ_WORDS = 4096  # 16 KiB of float32 per block


@cuda.jit
def smem_chase_kernel(chain, hops, out_cycles, sink):
    """One thread chases a random cycle of indices in shared memory (index form: the hop is
    one shift-add and one LDS, a couple of cycles above a raw-address load)."""
    sh = cuda.shared.array(SMEM_CHASE_SLOTS, uint32)
    if cuda.threadIdx.x != 0:
        return
    for i in range(SMEM_CHASE_SLOTS):
        sh[i] = chain[i]
    p = uint32(0)
    for _ in range(SMEM_CHASE_SLOTS):  # warm lap
        p = sh[p]
    for r in range(out_cycles.shape[0]):
        t0 = clock64()
        for _ in range(hops >> 3):
            p = sh[p]
            p = sh[p]
            p = sh[p]
            p = sh[p]
            p = sh[p]
            p = sh[p]
            p = sh[p]
            p = sh[p]
        sink[0] = p
        t1 = clock64()
        out_cycles[r] = t1 - t0


@cuda.jit
def smem_read_kernel(out, passes):
    """All threads of a block read consecutive float32 words (one per bank: conflict-free)."""
    sh = cuda.shared.array(SMEM_READ_WORDS, float32)
    t = cuda.threadIdx.x
    i = t
    while i < SMEM_READ_WORDS:
        sh[i] = float32(i & 7)
        i += cuda.blockDim.x
    cuda.syncthreads()
    s = float32(0.0)
    for _ in range(passes):
        i = t
        while i < SMEM_READ_WORDS:
            s += sh[i]
            i += cuda.blockDim.x
    out[cuda.grid(1)] = s


def smem_chain(seed: int) -> np.ndarray:
    return sattolo_cycle(SMEM_CHASE_SLOTS, seed).astype(np.uint32)


class SharedMemoryProbe:
    """Shared memory: latency (one thread chase, clock64) and streaming read bandwidth.
    setup(launch) picks the bandwidth launch; run(passes, reps) times it; latency() chases."""

    name = "shared_memory"
    backend = "cuda"

    def __init__(self, seed: int = 12345) -> None:
        self.seed = seed
        self.launch = Launch(1, 32)
        self.out = None

    def setup(self, launch: Launch) -> None:
        self.launch = launch
        self.out = cuda.device_array(launch.blocks * launch.threads, dtype=np.float32)

    def latency(self, hops: int, repetitions: int) -> tuple[int, np.ndarray]:
        """(hops, clock64 cycles per repetition) of one thread on one SM."""
        hops = max(8, hops // 8 * 8)
        out = cuda.to_device(np.zeros(repetitions, dtype=np.uint64))
        sink = cuda.device_array(1, dtype=np.uint32)
        smem_chase_kernel[1, 1](cuda.to_device(smem_chain(self.seed)), np.uint64(hops), out, sink)
        cuda.synchronize()
        return hops, out.copy_to_host()

    def run(self, passes: int, repetitions: int) -> list[float]:
        """Seconds per launch of the read kernel; bytes_read(passes) is what one launch read."""
        launch = self.launch
        return time_launches(lambda: smem_read_kernel[launch.blocks, launch.threads](self.out, passes), repetitions)

    def bytes_read(self, passes: int) -> int:
        return self.launch.blocks * SMEM_READ_WORDS * 4 * passes

    def verify(self) -> bool:
        """The read kernel's sums and a whole lap of the chase; raises ProbeError."""
        launch = self.launch
        out = cuda.device_array(launch.blocks * launch.threads, dtype=np.float32)
        smem_read_kernel[launch.blocks, launch.threads](out, 2)
        expect = 2 * float(sum(i & 7 for i in range(SMEM_READ_WORDS))) * launch.blocks
        ok_bw = bool(np.isclose(out.copy_to_host().sum(dtype=np.float64), expect))
        # the chase must return to slot 0 after a whole number of laps
        sink = cuda.device_array(1, dtype=np.uint32)
        out_c = cuda.to_device(np.zeros(1, dtype=np.uint64))
        smem_chase_kernel[1, 1](cuda.to_device(smem_chain(self.seed)), np.uint64(SMEM_CHASE_SLOTS), out_c, sink)
        return check(ok_bw and int(sink.copy_to_host()[0]) == 0, "shared-memory read or chase gave wrong values")

    def close(self) -> None:
        self.out = None


