"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): bandwidth kernels.

The streaming kernels are described once, in probes/kernels.py (as BabelStream's `bench[]` and
likwid's `.ptt` headers do): name, arrays touched, elements read and written and FLOPs per
element, counted as STREAM counts (no write-allocate traffic). `KERNELS` here pairs each entry
with its Numba implementation. Every kernel has the same signature `kernel(a, b, c, s, passes)
-> float64` and repeats its pass `passes` times inside its own loop, so a working set inside L1
is timed with neither Python's nor a compiled call's overhead per pass. The two drivers
(`run_kernel`, `run_parallel`) pick the kernel by its table index (see "drivers" below): a new
kernel is its table entry, its implementation and one line in `run_kernel`. The parallel driver
gives each thread one contiguous, line-aligned chunk and repeats it there (likwid-bench style:
no barrier between repetitions).
`BandwidthProbe.run` returns ns per pass over the working set; `bandwidth_gbs` is the one place
that turns those into GB/s. `verify()` checks the arrays after timing and raises if wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from numba import njit, prange

from memprobe.probes.cpu.buffers import Buffer, alloc
from memprobe.probes.cpu.intrinsics import store_fence, store_line_nt_f64
from memprobe.probes.kernels import STREAM_KERNELS, StreamKernelSpec
from memprobe.probes.protocol import ProbeError

ELEMENT_BYTES = 8  # float64, as STREAM
SCALAR = 3.0  # s in write and triad; with integer-valued b, c every result is exact
LINE_ELEMENTS = 8  # chunk borders on 64-byte lines: threads never share a line
PAD_BYTES = 4096 + 320  # arrays start 5 lines off a 4 KiB boundary from each other (no 4K aliasing)


# ---- kernels: same signature, one line of work each, repeated `passes` times inside ------------
# The repetition lives inside each kernel: a pass over an L1-sized set lasts ~50 ns at full vector
# width, and a compiled call per pass (argument unpacking, the arrays' reference counts, the
# kernel switch) cost a third to half of that, so L1 read 0.5 of likwid-bench's figure.
@njit(cache=True, nogil=True, fastmath=True)
def read_kernel(a, b, c, s, passes):
    """Sum of a, `passes` times. Two halves in one loop: with fastmath LLVM vectorises each
    reduction and interleaves it 4x, so 8 independent vector accumulators hide the add latency."""
    n = a.shape[0]
    h = n // 2
    x = 0.0
    y = 0.0
    for _ in range(passes):
        for i in range(h):
            x += a[i]
            y += a[h + i]
        for i in range(2 * h, n):
            x += a[i]
    return x + y


@njit(cache=True, nogil=True, fastmath=True)
def write_kernel(a, b, c, s, passes):
    for _ in range(passes):
        for i in range(a.shape[0]):
            a[i] = s
    return 0.0


@njit(cache=True, nogil=True, fastmath=True)
def copy_kernel(a, b, c, s, passes):
    for _ in range(passes):
        for i in range(a.shape[0]):
            a[i] = b[i]
    return 0.0


@njit(cache=True, nogil=True, fastmath=True)
def triad_kernel(a, b, c, s, passes):
    for _ in range(passes):
        for i in range(a.shape[0]):
            a[i] = b[i] + s * c[i]
    return 0.0


# ---- streaming-store variants: the same work, each whole line written with a non-temporal
# store. Beyond the last cache they save the read-for-ownership of every written line (a third
# of copy's traffic), which is how glibc's memcpy and likwid's *_mem_nt kernels reach memory's
# bandwidth; inside a cache they would only evict the data, so the scan runs them at memory size.
@njit(cache=True, nogil=True)
def _line_span(a):
    """(head, end): a[:head] runs up to the first 64-byte-aligned element, a[head:end] is whole
    lines, a[end:] the rest. Head and rest go through the cached kernel."""
    n = a.shape[0]
    head = min(n, ((64 - a.ctypes.data % 64) % 64) // 8)
    return head, head + (n - head) // 8 * 8


@njit(cache=True, nogil=True, inline="always")
def _line(x, j):
    """x[j:j+8] as a tuple; unsigned indices, so no wraparound test between the loads."""
    i = np.uint64(j)
    return (x[i], x[i + np.uint64(1)], x[i + np.uint64(2)], x[i + np.uint64(3)],
            x[i + np.uint64(4)], x[i + np.uint64(5)], x[i + np.uint64(6)], x[i + np.uint64(7)])


# Lines go out four 4 KiB pages at a time, one line of each page in turn (as glibc's large
# memcpy does): one sequential stream of non-temporal stores left one core at 0.92-0.95 of
# memcpy's copy on an Emerald Rapids guest; four interleaved pages keep more lines in flight.
NT_PAGES = 4
PAGE_ELEMENTS = 512  # float64 in 4 KiB


@njit(cache=True, nogil=True, inline="always")
def _nt_line(op, base, b, c, s, j):
    """One whole line at element j, stored non-temporally: op 0 writes s, 1 copies b, 2 triads."""
    addr = base + np.uint64(8 * j)
    if op == 0:
        store_line_nt_f64(addr, (s, s, s, s, s, s, s, s))
    elif op == 1:
        store_line_nt_f64(addr, _line(b, j))
    else:
        x = _line(b, j)
        y = _line(c, j)
        store_line_nt_f64(addr, (x[0] + s * y[0], x[1] + s * y[1], x[2] + s * y[2], x[3] + s * y[3],
                                 x[4] + s * y[4], x[5] + s * y[5], x[6] + s * y[6], x[7] + s * y[7]))


@njit(cache=True, nogil=True, fastmath=True)
def _nt_pass(op, a, b, c, s):
    """One pass of a streaming kernel: the unaligned head and the tail through the cached
    kernel, whole lines in blocks of NT_PAGES pages interleaved, the lines after the last
    whole block in order."""
    h, e = _line_span(a)
    if op == 0:
        write_kernel(a[:h], b, c, s, 1)
        write_kernel(a[e:], b, c, s, 1)
    elif op == 1:
        copy_kernel(a[:h], b[:h], c, s, 1)
        copy_kernel(a[e:], b[e:], c, s, 1)
    else:
        triad_kernel(a[:h], b[:h], c[:h], s, 1)
        triad_kernel(a[e:], b[e:], c[e:], s, 1)
    base = np.uint64(a.ctypes.data)
    step = NT_PAGES * PAGE_ELEMENTS
    whole = h + (e - h) // step * step
    for blk in range(h, whole, step):
        for q in range(0, PAGE_ELEMENTS, 8):
            for p in range(NT_PAGES):
                _nt_line(op, base, b, c, s, blk + p * PAGE_ELEMENTS + q)
    for j in range(whole, e, 8):
        _nt_line(op, base, b, c, s, j)


@njit(cache=True, nogil=True, fastmath=True)
def write_nt_kernel(a, b, c, s, passes):
    for _ in range(passes):
        _nt_pass(0, a, b, c, s)
    store_fence()
    return 0.0


@njit(cache=True, nogil=True, fastmath=True)
def copy_nt_kernel(a, b, c, s, passes):
    for _ in range(passes):
        _nt_pass(1, a, b, c, s)
    store_fence()
    return 0.0


@njit(cache=True, nogil=True, fastmath=True)
def triad_nt_kernel(a, b, c, s, passes):
    for _ in range(passes):
        _nt_pass(2, a, b, c, s)
    store_fence()
    return 0.0


# ---- drivers ----------------------------------------------------------------------------------
# Numba cannot cache a function that takes another as an argument (the type carries the object's
# identity, so every process recompiles, ~4 s per parallel variant); the drivers therefore pick
# the kernel by its table index here: a new kernel is its table entry plus one line below.
@njit(cache=True, nogil=True)
def run_kernel(kid, a, b, c, s, passes):
    if kid == 0:
        return read_kernel(a, b, c, s, passes)
    if kid == 1:
        return write_kernel(a, b, c, s, passes)
    if kid == 2:
        return copy_kernel(a, b, c, s, passes)
    if kid == 3:
        return triad_kernel(a, b, c, s, passes)
    if kid == 4:
        return write_nt_kernel(a, b, c, s, passes)
    if kid == 5:
        return copy_nt_kernel(a, b, c, s, passes)
    if kid == 6:
        return triad_nt_kernel(a, b, c, s, passes)
    return np.nan


@njit(cache=True, parallel=True)
def run_parallel(kid, a, b, c, s, passes, nchunks):
    n = a.shape[0]
    part = np.zeros(nchunks)
    for t in prange(nchunks):
        lo = (n * t // nchunks) // 8 * 8
        hi = n if t == nchunks - 1 else (n * (t + 1) // nchunks) // 8 * 8
        # unused arrays are empty; slicing an empty array stays empty
        aa = a[lo:hi]
        bb = b[lo:hi] if b.shape[0] else b
        cc = c[lo:hi] if c.shape[0] else c
        part[t] = run_kernel(kid, aa, bb, cc, s, passes)
    return part.sum()


# ---- the table --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BandwidthKernel:
    """A table entry (probes/kernels.py) with this backend's implementation."""

    spec: StreamKernelSpec
    kid: int  # index in run_kernel (the drivers' switch)
    kernel: Callable  # njit, signature (a, b, c, s, passes) -> float64

    name = property(lambda self: self.spec.name)
    arrays = property(lambda self: self.spec.arrays)
    read_bytes = property(lambda self: self.spec.read_bytes)
    write_bytes = property(lambda self: self.spec.write_bytes)
    flops = property(lambda self: self.spec.flops)
    stores = property(lambda self: self.spec.stores)
    base = property(lambda self: self.spec.base)
    bytes_per_element = property(lambda self: self.spec.bytes_per_element)


_IMPLEMENTATIONS: dict[str, Callable] = {
    "read": read_kernel, "write": write_kernel, "copy": copy_kernel, "triad": triad_kernel,
    "write_nt": write_nt_kernel, "copy_nt": copy_nt_kernel, "triad_nt": triad_nt_kernel,
}
# kid: the position in the shared table, which run_kernel's switch follows
KERNELS: tuple[BandwidthKernel, ...] = tuple(
    BandwidthKernel(spec, kid, _IMPLEMENTATIONS[spec.name]) for kid, spec in enumerate(STREAM_KERNELS))
KERNEL_NAMES = tuple(k.name for k in KERNELS)
CACHED_KERNELS = tuple(k for k in KERNELS if k.stores == "cached")
STREAMING_KERNELS = tuple(k for k in KERNELS if k.stores == "streaming")


def kernel_by_name(name: str) -> BandwidthKernel:
    for k in KERNELS:
        if k.name == name:
            return k
    raise KeyError(f"unknown bandwidth kernel {name!r}; known: {', '.join(KERNEL_NAMES)}")


def bandwidth_gbs(kernel: BandwidthKernel, n_elements: int, ns_per_pass: float) -> float:
    """The one place timings become bandwidth: STREAM bytes per pass / ns = GB/s."""
    if not ns_per_pass or ns_per_pass <= 0:
        return float("nan")
    return kernel.bytes_per_element * n_elements / ns_per_pass


def elements_for(kernel: BandwidthKernel, size_bytes: int) -> int:
    """Elements per array so that the arrays together span `size_bytes` (a multiple of 8*2)."""
    n = int(size_bytes) // (ELEMENT_BYTES * kernel.arrays)
    return max(16, n - n % 16)


def arena_bytes(size_bytes: int) -> int:
    """Buffer a probe needs to carve any kernel's arrays for a working set of `size_bytes`."""
    return int(size_bytes) + 3 * (4096 + PAD_BYTES)


PATTERNS = ((1.0, 1024.0), (7.0, 512.0), (3.0, 256.0))  # array i holds (index * mult) % mod (a power of 2)


@njit(cache=True, parallel=True)
def fill_pattern(arr, mult, mask):
    """arr[i] = (i * mult) % (mask + 1) on every thread, in integers (the moduli are powers of
    two): a memory-sized working set (gigabytes, by STREAM's rule) is filled and its pages
    faulted in at memory speed, not at numpy's one core and float modulo."""
    for i in prange(arr.shape[0]):
        arr[i] = np.float64((np.int64(i) * mult) & mask)


@njit(cache=True, parallel=True)
def wrong_pattern(arr, mult, mask):
    """How many elements differ from (i * mult) % (mask + 1), and the pattern's sum."""
    bad = 0
    total = 0.0
    for i in prange(arr.shape[0]):
        v = np.float64((np.int64(i) * mult) & mask)
        total += v
        if arr[i] != v:
            bad += 1
    return bad, total


@njit(cache=True, parallel=True)
def wrong_outputs(kid, a, b, c, s):
    """How many elements of the written array differ from what kernel `kid`'s base must write
    (write: s; copy: b; triad: b + s*c), on every thread: a memory-sized set checks in a pass."""
    bad = 0
    for i in prange(a.shape[0]):
        if kid == 1:
            want = s
        elif kid == 2:
            want = b[i]
        else:
            want = b[i] + s * c[i]
        if a[i] != want:
            bad += 1
    return bad


@njit(cache=True, parallel=True)
def fill_zero(arr):
    for i in prange(arr.shape[0]):
        arr[i] = 0.0


WAKE_ELEMENTS = 1 << 14  # 128 KiB per array: enough to start every thread of the pool


def max_threads() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)


class BandwidthError(ProbeError):
    """A kernel produced wrong values: its timings are meaningless."""


def _entry(dispatcher, args: tuple):
    """The compiled entry point for these argument types, skipping the dispatcher's type
    resolution (a few us): a pass at L1 size lasts well under a microsecond."""
    try:
        key = tuple(numba.typeof(x) for x in args)
        cres = dispatcher.overloads.get(key)
    except Exception:  # typeof of an odd argument: the dispatcher handles it
        cres = None
    if cres is None:
        return dispatcher
    return cres.entry_point


def _timed_ns(fn, *args) -> tuple[float, float]:
    t0 = time.perf_counter_ns()
    r = fn(*args)
    return float(time.perf_counter_ns() - t0), r


def _forget(held: dict[tuple[int, int], int], start: int, n: int) -> None:
    """Drop the patterns of every array overlapping elements [start, start + n)."""
    for s0, n0 in [key for key in held if key[0] < start + n and start < key[0] + key[1]]:
        del held[(s0, n0)]


class BandwidthProbe:
    """One kernel of the table over a working set of `size_bytes` (all its arrays together).

    setup(size_bytes) carves the arrays out of one huge-page buffer (reused across sizes, so
    pages are faulted in once) and fills them; run() returns ns per pass, one per repetition;
    verify() checks the arrays and the last reduction, and raises BandwidthError if wrong.
    """

    backend = "cpu"

    def __init__(self, kernel: str | BandwidthKernel, page_kind: str = "huge", arena: Buffer | None = None,
                 offset_bytes: int = 0):
        """`arena`: a buffer to carve the arrays from, shared by several probes and closed by
        its owner (a memory-sized working set is faulted in once for every kernel);
        `offset_bytes`: where in it the arrays start (a multiple of 4 KiB)."""
        self.kernel = kernel_by_name(kernel) if isinstance(kernel, str) else kernel
        self.name = f"bandwidth_{self.kernel.name}"
        self.page_kind = page_kind
        self.shared_arena = arena is not None
        self.offset_elements = int(offset_bytes) // ELEMENT_BYTES
        self.buffer: Buffer | None = arena
        self.n_elements = 0
        self.size_bytes = 0
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._last: tuple[float, int, float] | None = None  # (result, times, passes' scalar)

    @property
    def bytes_per_element(self) -> int:
        return self.kernel.bytes_per_element

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self._arrays is not None, "setup() first"
        return self._arrays

    @property
    def bytes_per_pass(self) -> int:
        return self.kernel.bytes_per_element * self.n_elements

    def setup(self, size_bytes: int) -> None:
        k = self.kernel
        need = arena_bytes(size_bytes) + self.offset_elements * ELEMENT_BYTES
        if self.buffer is None or self.buffer.array.nbytes < need:
            if self.shared_arena:
                raise ValueError(f"the shared arena holds {self.buffer.array.nbytes} bytes, {need} needed")
            self.close()
            self.buffer = alloc(need, np.float64, self.page_kind)
            fill_zero(self.buffer.array)  # fault every page in now, not inside a timed run
        n = elements_for(k, size_bytes)
        stride = (n * ELEMENT_BYTES + 4095) // 4096 * 4096 + PAD_BYTES
        arena = self.buffer.array
        views = []
        for i in range(3):
            if i < k.arrays:
                off = self.offset_elements + i * stride // ELEMENT_BYTES
                views.append(arena[off:off + n])
            else:
                views.append(np.empty(0, np.float64))
        a, b, c = views
        # integer-valued inputs below 2**10: sums and b + 3*c are exact in float64
        # only the arrays the kernel reads need known contents: `a` is the one written (read's
        # only array is its input); the arena's pages are faulted in already
        read_only = (0,) if (k.base or k.name) == "read" else tuple(range(1, k.arrays))
        # an array that still holds its pattern from an earlier probe on the same arena is not
        # filled again (memory's arrays are gigabytes, and every kernel reads the same b and c)
        held = self.buffer.filled
        for i in read_only:
            span = (self.offset_elements + i * stride // ELEMENT_BYTES, n)
            if held.get(span) == i:
                continue
            mult, mod = PATTERNS[i]
            fill_pattern((a, b, c)[i], np.int64(mult), np.int64(mod) - 1)
            _forget(held, *span)
            held[span] = i
        if k.write_bytes:
            _forget(held, self.offset_elements, n)  # the kernel will write `a`
        self._arrays = (a, b, c)
        self.n_elements = n
        self.size_bytes = int(size_bytes)
        self._last = None

    def _call(self, times: int, threads: int, first: int | None = None) -> tuple[float, float]:
        a, b, c = self._arrays  # type: ignore[misc]
        if first is not None:  # the kernel on the arrays' first elements only (same values)
            a, b, c = a[:first], b[:first], c[:first]
        kid = self.kernel.kid
        if threads <= 1:
            fn = _entry(run_kernel, (kid, a, b, c, SCALAR, times))
            return _timed_ns(fn, kid, a, b, c, SCALAR, times)
        fn = _entry(run_parallel, (kid, a, b, c, SCALAR, times, threads))
        return _timed_ns(fn, kid, a, b, c, SCALAR, times, threads)

    def run(self, repetitions: int, threads: int = 1, target_ns: float = 2e6) -> list[float]:
        """ns per pass over the working set, one value per repetition (each repetition repeats
        the pass enough times to last about `target_ns`). threads=1: the serial driver; more:
        numba's pool set to that many threads (restored afterwards)."""
        assert self._arrays is not None, "setup() first"
        threads = max(1, min(int(threads), max_threads()))
        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            times = 1
            if target_ns > 1.0:  # (target 1 ns or less: one pass a repetition, as at memory size)
                # calibrate on one thread: a parallel call's timing carries the pool's wake-up,
                # which on a shared machine can be milliseconds and would leave `times` at 1
                self._call(1, 1)  # warm-up: compiles if needed, brings the data in
                while True:  # grow until one call is long enough to trust the clock
                    dt = min(self._call(times, 1)[0] for _ in range(2))
                    if dt >= target_ns / 4 or times >= 1 << 30:
                        break
                    times *= 4 if dt < target_ns / 16 else 2
                times = max(1, int(times * target_ns / max(dt, 1.0)))
            if threads > 1:
                # wake the pool: with a whole pass where each thread's part must be in its own
                # core's caches; at memory's one-pass size, on a few pages (a whole pass there
                # would cost as much as the measurement)
                self._call(1, threads, None if target_ns > 1.0 else WAKE_ELEMENTS)
            out = []
            r = 0.0
            for _ in range(repetitions):
                dt, r = self._call(times, threads)
                out.append(dt / times)
            self._last = (float(r), times, SCALAR)
        finally:
            numba.set_num_threads(before)
        return out

    def verify(self) -> None:
        """Raise BandwidthError unless the arrays (and the last reduction) hold what the kernel
        must have produced."""
        assert self._arrays is not None, "setup() first"
        a, b, c = self._arrays
        name = self.kernel.base or self.kernel.name  # a streaming kernel does its base's work
        base_kid = {"read": 0, "write": 1, "copy": 2, "triad": 3}.get(name)
        if base_kid is None:  # a kernel added to the table without a check here
            raise BandwidthError(f"no verification for kernel {name!r}")
        if base_kid == 0:
            mult, mod = PATTERNS[0]
            bad, total = wrong_pattern(a, np.int64(mult), np.int64(mod) - 1)
            ok = bad == 0
            if ok and self._last is not None:
                result, times, _ = self._last
                ok = result == total * times
        else:
            ok = wrong_outputs(base_kid, a, b, c, SCALAR) == 0
        if not ok:
            raise BandwidthError(
                f"bandwidth kernel {name!r} produced wrong values at {self.size_bytes} bytes: "
                f"its timings are not valid")

    def close(self) -> None:
        self._arrays = None
        if self.buffer is not None and not self.shared_arena:
            self.buffer.close()
        self.buffer = None


def stream_pass(kernel: BandwidthKernel, arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """One serial pass (nogil): what the loaded-latency probe's streaming threads call."""
    a, b, c = arrays
    return kernel.kernel(a, b, c, SCALAR, 1)
