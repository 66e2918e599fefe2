"""Two LLVM-level helpers Numba lacks: a load from a raw address (so a chase hop is a single
`mov rax, [rax]`, as in a C pointer chase) and a relaxed atomic add (so two threads really hit
memory each iteration, which the false-sharing line-size probe needs)."""

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
