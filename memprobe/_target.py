"""How wide Numba's vectors are: the full width the CPU has.

Not a stage of the data flow; set up once, at the top of `memprobe/__init__.py`, before any
kernel compiles. LLVM tunes several Intel cores that have AVX-512 (Ice Lake server and later:
`icelake-server`, `sapphirerapids`, `emeraldrapids`, ...) with `prefer-256-bit`: its vectoriser
then emits 256-bit ymm loops although 512-bit zmm exist, to spare the clock drop that zmm cost
on Skylake-SP. A streaming kernel inside L1 is bound by the width of each load and store, so
with ymm it reads about 0.6-0.8 of what the core moves: on an Emerald Rapids KVM guest
likwid-bench's AVX-512 triad ran 1.3x memprobe's ymm triad at 16-32 KiB, and memprobe's zmm
triad runs 1.2x likwid's (docs/validation.md).

On a CPU whose features include `avx512f`, memprobe therefore asks Numba for the host's own
feature string plus `-prefer-256-bit` (`NUMBA_CPU_FEATURES`), unless the user set
`NUMBA_CPU_NAME` or `NUMBA_CPU_FEATURES`. It applies to the process and its children, and Numba
keys its cache by the feature string, so cached kernels of either width never mix. A child that
inherits the value memprobe set (`MEMPROBE_NUMBA_CPU_FEATURES` marks it), on this host or another
one a scheduler sent it to, works it out again for its own CPU. If Numba has compiled something
already, its target is fixed and this changes nothing.
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "NUMBA_CPU_FEATURES"
MARK_VAR = "MEMPROBE_NUMBA_CPU_FEATURES"  # what memprobe set, so a child on another host redoes it
FULL_WIDTH = "-prefer-256-bit"


def full_width_features() -> str | None:
    """The host's LLVM feature string with `-prefer-256-bit` added, or None where that does not
    apply (no AVX-512, not x86, or llvmlite cannot say)."""
    try:
        import llvmlite.binding as ll

        features = ll.get_host_cpu_features()
    except Exception:  # an llvmlite without this call, or a platform it cannot read
        return None
    if not features.get("avx512f"):
        return None
    return features.flatten() + "," + FULL_WIDTH


def configure_vector_width() -> str | None:
    """Set NUMBA_CPU_FEATURES for full-width vectors where it applies; return what is in force
    (None: Numba's default)."""
    inherited = os.environ.get(ENV_VAR)
    if inherited and inherited == os.environ.get(MARK_VAR):
        # set by memprobe in a parent process, perhaps on another host (a Slurm job inherits the
        # submitting shell's environment): this host's own features decide, not the parent's
        del os.environ[ENV_VAR], os.environ[MARK_VAR]
        inherited = None
    if inherited or os.environ.get("NUMBA_CPU_NAME"):
        return inherited or None
    features = full_width_features()
    if features is None:
        return None
    os.environ[ENV_VAR] = os.environ[MARK_VAR] = features
    config = sys.modules.get("numba.core.config")
    if config is not None and getattr(config, "CPU_FEATURES", None) is None:
        config.CPU_FEATURES = features
    return features
