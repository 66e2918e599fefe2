"""Shared bits of the benchmark scripts: building the C references, medians, table printing, a zoo
file's model list."""

from __future__ import annotations

import shutil
import statistics
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "_build"


def build_c(name: str, flags: list[str]) -> Path:
    """Compile benchmarks/c/NAME.c into benchmarks/_build/NAME (rebuilt when the source is newer)."""
    src, exe = HERE / "c" / f"{name}.c", BUILD / name
    BUILD.mkdir(exist_ok=True)
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise SystemExit("no C compiler (gcc) found: the C reference cannot be built")
        subprocess.run([cc, *flags, "-o", str(exe), str(src)], check=True)
    return exe


def median(xs) -> float:
    return statistics.median(xs)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def zoo_models(path: Path) -> list[str]:
    """The MODELS a zoo file (benchmarks/predict_zoo.py, zoo_outside.py, a user's) defines."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_zoo", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.MODELS)
