"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): GPU intrinsics.

Numba has no `clock64()`, `%globaltimer`, `%smid` or raw-address cache-hinted loads, so they
are written here as numba.cuda `@intrinsic`s emitting one inline-PTX instruction each (the same
`llvmlite.ir.InlineAsm` route numba-cuda itself uses for `cuda.ldcg`, see its `cache_hints.py`):

  clock64()              mov.u64 %clock64         SM cycle counter (per SM, runs at the SM clock)
  globaltimer_ns()       mov.u64 %globaltimer     ns wall clock shared by the GPU (driver-updated)
  smid()                 mov.u32 %smid            which SM this thread runs on
  load_ca(buf, addr)     ld.global.ca.u64 [addr]  default caching: L1 then L2
  load_cg(buf, addr)     ld.global.cg.u64 [addr]  L1 bypassed: L2 only

Ordering: a clock read has no inputs, so nothing makes it wait for an outstanding load; a
timed region therefore ends with an instruction that *consumes* the last loaded value (a store
of it to shared memory, as in Jia et al., "Dissecting the NVIDIA Volta GPU architecture") before
the closing clock64(): warps issue in order and the store stalls on the load's scoreboard.

Why raw addresses: the chase buffer stores the device address of the next slot, so a hop is
one `ld` with no index arithmetic (as the CPU chase does); `buf` is only passed so the simulator
seam below can read the same chain.

Simulator seam (NUMBA_ENABLE_CUDASIM=1): the simulator runs kernels as Python and has no inline
PTX, so there these names are plain Python functions with the same signatures:
  * clock64() returns a process-wide counter that grows by one per call and per simulated load
    (a *count*, not cycles: a timed region of n loads reads n + 1),
  * globaltimer_ns() returns time.perf_counter_ns() (host time, meaningless for GPU speed),
  * smid() returns blockIdx.x (block k "runs on SM k", so SM targeting logic is testable),
  * load_ca/load_cg read buf[addr // 8]: under the simulator "addresses" are byte offsets
    from the start of `buf` (the fill code uses base address 0, see latency.py).
Nothing measured under the simulator is a timing; tests check logic and shapes only.
"""

from __future__ import annotations

import itertools
import os
import sys
import time


def simulator_enabled() -> bool:
    """True when numba.cuda runs (or, not yet imported, will run) kernels in its simulator.

    Once numba.cuda is imported its mode is fixed for the process, so numba's own config is
    asked first; the environment variable only decides for a future import."""
    if "numba.cuda" in sys.modules:
        # ask the imported module itself: numba's config can be re-read from an environment
        # that changed since the import, but the functions numba.cuda exported cannot
        cuda_mod = sys.modules["numba.cuda"]
        jit = getattr(cuda_mod, "jit", None)
        if jit is not None:
            return "simulator" in getattr(jit, "__module__", "")
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


from numba import cuda  # noqa: E402  (after the helper: the mode is read as numba imports)

SIMULATOR = simulator_enabled()

if SIMULATOR:
    _counter = itertools.count(1)

    def clock64():  # simulator: a monotonic counter, not cycles
        return next(_counter)

    def globaltimer_ns():  # simulator: host ns
        return time.perf_counter_ns()

    @cuda.jit(device=True)
    def smid():  # simulator: block k pretends to run on SM k (a device function, so the
        return cuda.blockIdx.x  # simulator hands it the launch's blockIdx)

    def load_ca(buf, addr):  # each simulated load also ticks the counter, so a timed region
        next(_counter)  # reads (loads + 1) "cycles": tests check the hop count that way
        return buf[int(addr) >> 3]

    def load_cg(buf, addr):
        next(_counter)
        return buf[int(addr) >> 3]

else:
    from llvmlite import ir
    from numba import types
    from numba.cuda.extending import intrinsic

    def _sreg(ptx: str, bits: int):
        """An intrinsic reading one special register. side_effect=True marks the asm volatile,
        so LLVM neither hoists it out of a loop nor merges two reads."""
        ret_ty = types.uint64 if bits == 64 else types.uint32
        constraint = "=l" if bits == 64 else "=r"

        @intrinsic
        def _impl(typingctx):
            sig = ret_ty()

            def codegen(context, builder, signature, args):
                fnty = ir.FunctionType(ir.IntType(bits), [])
                # the memory clobber keeps LLVM from moving loads/stores across the read
                asm = ir.InlineAsm(fnty, ptx, constraint + ",~{memory}", side_effect=True)
                return builder.call(asm, [])

            return sig, codegen

        return _impl

    clock64 = _sreg("mov.u64 $0, %clock64;", 64)
    globaltimer_ns = _sreg("mov.u64 $0, %globaltimer;", 64)
    smid = _sreg("mov.u32 $0, %smid;", 32)

    def _load(op: str):
        @intrinsic
        def _impl(typingctx, buf, addr):
            if not isinstance(addr, types.Integer):
                return None
            sig = types.uint64(buf, addr)

            def codegen(context, builder, signature, args):
                a = context.cast(builder, args[1], signature.args[1], types.uint64)
                fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64)])
                asm = ir.InlineAsm(fnty, f"ld.global.{op}.u64 $0, [$1];", "=l,l,~{memory}",
                                   side_effect=True)
                return builder.call(asm, [a])

            return sig, codegen

        return _impl

    load_ca = _load("ca")
    load_cg = _load("cg")


def device_address(darr) -> int:
    """Base address of a device array as the chase kernels see it: the real device pointer, or
    0 under the simulator, where the load seams read buf[addr // 8]."""
    if SIMULATOR:
        return 0
    return int(darr.__cuda_array_interface__["data"][0])


class KernelTimer:
    """Elapsed seconds of GPU work between start() and stop().

    Real GPU: CUDA events on the default stream (what the GPU did, not Python's overhead).
    Simulator: events exist but record no time, so host perf_counter is used (logic only)."""

    def __init__(self) -> None:
        self._ev0 = self._ev1 = None
        self._t0 = 0.0

    def start(self) -> None:
        if SIMULATOR:
            self._t0 = time.perf_counter()
        else:
            self._ev0, self._ev1 = cuda.event(timing=True), cuda.event(timing=True)
            self._ev0.record()

    def stop(self) -> float:
        if SIMULATOR:
            return time.perf_counter() - self._t0
        self._ev1.record()
        self._ev1.synchronize()
        return cuda.event_elapsed_time(self._ev0, self._ev1) / 1e3


def time_launches(launch, repetitions: int, warmup: int = 1) -> list[float]:
    """Call `launch()` (which enqueues GPU work) warmup + repetitions times; seconds of each
    timed call. The first call also pays the JIT, which is why it is not kept."""
    for _ in range(warmup):
        launch()
    cuda.synchronize()
    out = []
    t = KernelTimer()
    for _ in range(repetitions):
        t.start()
        launch()
        out.append(t.stop())
    return out


@cuda.jit
def clock_kernel(spin_ns, out_cycles, out_ns):
    """One thread spins for `spin_ns` of %globaltimer and records both deltas: the SM clock is
    cycles / ns. (Simulator: host ns and a counter, so the ratio means nothing there.)"""
    if cuda.threadIdx.x != 0 or cuda.blockIdx.x != 0:
        return
    for r in range(out_cycles.shape[0]):
        g0 = globaltimer_ns()
        c0 = clock64()
        g1 = g0
        while g1 - g0 < spin_ns:
            g1 = globaltimer_ns()
        c1 = clock64()
        out_cycles[r] = c1 - c0
        out_ns[r] = g1 - g0


def clock_samples(repetitions: int, spin_ns: int) -> tuple[list[int], list[int]]:
    """Raw (cycles, ns) pairs of `repetitions` spins on one SM."""
    import numpy as np

    cyc = cuda.to_device(np.zeros(repetitions, dtype=np.uint64))
    ns = cuda.to_device(np.zeros(repetitions, dtype=np.uint64))
    clock_kernel[1, 1](np.uint64(spin_ns), cyc, ns)
    cuda.synchronize()
    return [int(v) for v in cyc.copy_to_host()], [int(v) for v in ns.copy_to_host()]
