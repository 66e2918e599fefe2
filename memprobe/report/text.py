"""Stage 5 of the flow (... -> result -> **report**): how numbers read, in one place. The HTML
views, the figures and the terminal tables all format sizes and figures with these (no
matplotlib here, so the CLI imports it cheaply)."""

from __future__ import annotations

import math
import numbers
from typing import Any

# The training study's models as the report shows them, in the order it shows them: (name, legend
# label, heading). They are listed in memprobe/train/catalog.py (MODELS), which the report may not
# import (it reads result records only: DESIGN.md, tests/test_structure.py); this copy is held to
# that table by tests/test_train_catalog.py. A model not here is shown by its name.
STUDY_MODEL_TEXT: tuple[tuple[str, str, str], ...] = (
    ("mlp", "MLP", "MLP: dense layers, ReLU, SGD"),
    ("cnn", "CNN", "CNN: ResNet-style bottleneck blocks (1x1-3x3-1x1 convolutions, batch norm, ReLU)"),
    ("transformer", "transformer", "Transformer: GPT-style blocks (layer norm, causal self-attention, GELU MLP)"),
)
STUDY_MODEL_ORDER: tuple[str, ...] = tuple(name for name, _label, _title in STUDY_MODEL_TEXT)


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def size_tick(n: float) -> str:
    """Binary size in the short tick form: 4K, 32K, 1M, 1.5M, 32M, 1G."""
    if n is None or not math.isfinite(n) or n <= 0:
        return ""
    for unit, div in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if abs(v - round(v)) < 1e-9 else f"{v:.3g}{unit}"
    return f"{n:.0f}"


def size_text(n: float | None) -> str:
    """Binary size for tables: 32 KiB, 1.5 MiB, 24.0 GiB."""
    if n is None or isinstance(n, bool) or not isinstance(n, numbers.Real) or not math.isfinite(n) or n < 0:
        return "—"  # numbers.Real: NumPy's integers too (a fleet's DataFrame cells)
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            v = n / div
            return f"{v:.0f} {unit}" if abs(v - round(v)) < 1e-9 else f"{v:.3g} {unit}"
    return f"{n:.0f} B"


def size_range_text(lo: float | None, hi: float | None) -> str:
    """An interval of sizes, short: 251-602 KiB, 2.83-5.66 MiB, 640 KiB-1.5 MiB."""
    if lo is None or hi is None:
        return "-"
    a, b = size_text(lo), size_text(hi)
    ua, ub = a.rsplit(" ", 1), b.rsplit(" ", 1)
    if len(ua) == 2 and len(ub) == 2 and ua[1] == ub[1]:
        return f"{ua[0]}-{b}"
    return f"{a}-{b}"


def fmt3(v: float) -> str:
    """3 significant digits without an exponent: 0.0123, 4.56, 171, 5 930, 690 000."""
    if not finite(v):
        return "—"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        digits = int(math.floor(math.log10(a))) + 1
        r = round(v, 3 - digits)
        return f"{r:,.0f}".replace(",", "\u2009")
    if a < 1e-4:
        return f"{v:.2e}"
    return f"{v:.3g}"
