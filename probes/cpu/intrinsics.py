"""Stage 1 of the flow (**probe** -> samples -> inference -> result -> report): building
blocks of the CPU kernels, so that a kernel costs what its loads and stores cost.

LLVM-level helpers Numba lacks: a load from a raw address (so a chase hop is a single
`mov rax, [rax]`, as in a C pointer chase), a relaxed atomic add (so two threads really hit
memory each iteration, which the false-sharing line-size probe needs), and a non-temporal
whole-line store with its fence (the streaming-store bandwidth kernels, as glibc's memcpy
and likwid's `*_mem_nt` kernels use beyond the last cache)."""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def load_u64(typingctx, addr):
    """*(uint64_t *)addr"""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load(ptr, align=8)

    return sig, codegen


@intrinsic
def atomic_add_u64(typingctx, addr, value):
    """__atomic_fetch_add((uint64_t *)addr, value, relaxed); returns the old value."""
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.atomic_rmw("add", ptr, args[1], "monotonic")

    return sig, codegen


@intrinsic
def store_line_nt_f64(typingctx, addr, values):
    """One whole 64-byte line, a tuple of 8 float64, stored non-temporally (`vmovntpd`:
    write-combined straight to memory, no read-for-ownership of the line) at a 64-byte-aligned
    `addr`. One full line per call so the write-combining buffer always flushes a whole line.
    LLVM's `!nontemporal` metadata on an aligned vector store is what clang emits for
    `__builtin_nontemporal_store`; an unaligned address would fault, so callers align first."""
    if not (isinstance(values, types.UniTuple) and values.count == 8 and values.dtype == types.float64):
        return None
    sig = types.void(types.uint64, values)

    def codegen(context, builder, signature, args):
        vt = ir.VectorType(ir.DoubleType(), 8)
        v = ir.Constant(vt, ir.Undefined)
        for k in range(8):
            v = builder.insert_element(v, builder.extract_value(args[1], k), ir.IntType(32)(k))
        ptr = builder.inttoptr(args[0], vt.as_pointer())
        st = builder.store(v, ptr, align=64)
        st.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def store_fence(typingctx):
    """A full fence (`mfence` on x86): non-temporal stores are weakly ordered, so a kernel that
    issued them fences before another thread (or the verification) reads the data."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen
