"""memprobe/_target.py: full-width vectors where the CPU has them, the user's choice kept."""

import os
import subprocess
import sys

import pytest

from memprobe import _target

HAS_AVX512 = _target.full_width_features() is not None


def _features_in_child(env: dict) -> str:
    code = "import memprobe, os; print(os.environ.get('NUMBA_CPU_FEATURES', ''))"
    full = {k: v for k, v in os.environ.items()
            if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "MEMPROBE_NUMBA_CPU_FEATURES")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_users_choice_is_kept():
    assert _features_in_child({"NUMBA_CPU_FEATURES": "+sse2"}) == "+sse2"
    assert _features_in_child({"NUMBA_CPU_NAME": "generic"}) == ""


def test_full_width_asked_for_exactly_where_avx512_exists():
    got = _features_in_child({})
    if HAS_AVX512:
        assert got.endswith(",-prefer-256-bit") and "+avx512f" in got
    else:
        assert got == ""


@pytest.mark.skipif(not HAS_AVX512, reason="this CPU has no AVX-512: Numba's default width is its full width")
def test_streaming_kernels_compile_to_512_bit_loops(tmp_path):
    """The L1 figures depend on it: a triad in ymm moves half of what the core can."""
    code = ("import numpy as np, memprobe\n"
            "from memprobe.probes.cpu.bandwidth import triad_kernel\n"
            "a = np.zeros(64); triad_kernel(a, a, a, 3.0, 1)\n"
            "print('zmm' in ''.join(triad_kernel.inspect_asm().values()))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "MEMPROBE_NUMBA_CPU_FEATURES")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)  # compiled here: Numba cannot show cached code's assembly
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_a_value_memprobe_set_is_worked_out_again_in_a_child():
    """A job inherits the submitting host's environment: a NUMBA_CPU_FEATURES that memprobe set
    (marked) is recomputed for the child's own CPU, while a user's own value stays."""
    foreign = "+sse2,+avx512f,-prefer-256-bit"
    got = _features_in_child({"NUMBA_CPU_FEATURES": foreign, "MEMPROBE_NUMBA_CPU_FEATURES": foreign})
    assert got == (_target.full_width_features() or "")
    assert _features_in_child({"NUMBA_CPU_FEATURES": foreign}) == foreign
