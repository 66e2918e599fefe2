"""FMA and matmul probes: values checked apart from timing; the FMA loop is packed vfmadd."""

import re

import pytest

from memprobe.probes.cpu.compute import FmaError, FmaProbe, GemmProbe, blas_library, fma_asm, gflops


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
def test_fma_values(dtype, threads):
    p = FmaProbe(dtype)
    p.setup(threads)
    ns = p.run(1, target_ns=2e5)
    assert ns[0] > 0 and p.flops_per_run == 2 * p.lanes * p.iterations * threads
    p.verify()


@pytest.mark.parametrize("dtype,suffix", [("float32", "ps"), ("float64", "pd")])
def test_fma_loop_is_packed(dtype, suffix):
    asm = fma_asm(dtype)
    fmas = re.findall(rf"vfmadd\d+{suffix}\s+%([xyz])mm", asm)
    if not fmas:
        pytest.skip("no FMA in this ISA")
    assert any(r in "yz" for r in fmas), "FMA kernel did not use 256/512-bit registers"


def test_fma_verify_catches_wrong_values(monkeypatch):
    p = FmaProbe("float64")
    p.setup(1)
    import memprobe.probes.cpu.compute as c
    ref = c.fma_reference
    monkeypatch.setattr(c, "fma_reference", lambda *a: ref(*a) + 1e-3)  # kernel "wrong" now
    with pytest.raises(FmaError):
        p.verify()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm(dtype):
    g = GemmProbe(dtype)
    g.setup(64)
    ns = g.run(2)
    g.verify()
    assert gflops(g.flops_per_run, ns[0]) > 0
    g.close()
    assert isinstance(blas_library(), str) and blas_library()
