"""Install hygiene: Numba's cache files go to a per-user folder, never into memprobe's package.

A scan's `@njit(cache=True)` kernels used to write *.nbi/*.nbc into site-packages/memprobe/.../
__pycache__. `pip uninstall` leaves those behind, and the leftover folder then shadows a later
`pip install -e .` (ImportError on `memprobe.__version__`). memprobe/_cache.py sets
NUMBA_CACHE_DIR when memprobe is imported; these tests check that Numba honours it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import memprobe  # first, as the CLI does (conftest.py may have imported numba before this)
import numba

from memprobe import _cache


def _package_dirs() -> list[Path]:
    import memprobe.probes

    return [Path(memprobe.__file__).resolve().parent, Path(memprobe.probes.__file__).resolve().parent]


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)


def _numba_cache_files(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for pat in ("*.nbi", "*.nbc") for p in folder.rglob(pat)}


def test_numba_cache_dir_is_set_and_outside_the_package():
    cache_dir = numba.config.CACHE_DIR
    assert cache_dir, "numba.config.CACHE_DIR is empty: Numba would cache beside the sources"
    assert os.environ.get("NUMBA_CACHE_DIR") == cache_dir
    for pkg in _package_dirs():
        assert not _inside(Path(cache_dir), pkg), f"cache dir {cache_dir} is inside {pkg}"


def test_memprobe_kernels_cache_under_the_cache_dir():
    """Where Numba will put memprobe's own kernels (chosen at decoration time, no compile)."""
    from memprobe.probes.cpu import bandwidth
    from memprobe.train import network

    cache_dir = Path(numba.config.CACHE_DIR).resolve()
    for kernel in (bandwidth.read_kernel, network.SERIAL["empty"]):
        path = Path(kernel._cache._cache_path)
        assert _inside(path, cache_dir), f"{kernel.py_func.__qualname__} caches in {path}"
        for pkg in _package_dirs():
            assert not _inside(path, pkg), f"{kernel.py_func.__qualname__} caches in the package: {path}"


def test_a_cached_kernel_writes_only_to_the_cache_dir(tmp_path):
    """Compile a tiny cache=True function from a temp module: its index and data land under
    CACHE_DIR, none beside its source, and nothing new appears in memprobe's package folders."""
    before = {pkg: _numba_cache_files(pkg) for pkg in _package_dirs()}
    name = f"memprobe_cache_check_{uuid.uuid4().hex[:12]}"
    src = tmp_path / f"{name}.py"
    src.write_text(textwrap.dedent("""
        from numba import njit

        @njit(cache=True)
        def add_one(x):
            return x + 1
    """))
    spec = importlib.util.spec_from_file_location(name, src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.add_one(41) == 42

    cache_dir = Path(numba.config.CACHE_DIR)
    written = sorted(cache_dir.rglob(f"{name}.*"))
    try:
        assert not _numba_cache_files(tmp_path), "Numba cached beside the source: NUMBA_CACHE_DIR ignored"
        assert any(p.suffix == ".nbi" for p in written), f"no index for {name} under {cache_dir}"
        assert any(p.suffix == ".nbc" for p in written), f"no data for {name} under {cache_dir}"
        for pkg, old in before.items():
            new = {p: t for p, t in _numba_cache_files(pkg).items() if old.get(p) != t}
            assert not new, f"Numba cache files written into the package: {sorted(new)}"
    finally:
        for p in written:
            p.unlink(missing_ok=True)
        for d in {p.parent for p in written}:
            try:
                d.rmdir()
            except OSError:
                pass


def test_a_fresh_process_gets_the_per_user_folder(tmp_path):
    """What `memprobe scan` gets: memprobe imported before numba, no NUMBA_CACHE_DIR set."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    out = subprocess.run(
        [sys.executable, "-c", "import memprobe, numba; print(numba.config.CACHE_DIR)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "xdg" / "memprobe" / "numba")
    assert (tmp_path / "xdg" / "memprobe" / "numba").is_dir()


def test_a_user_chosen_cache_dir_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert _cache.configure_numba_cache() == str(tmp_path / "mine")
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")


def test_an_unwritable_home_falls_back_to_the_temp_dir(monkeypatch, tmp_path):
    home = tmp_path / "not-a-folder"
    home.write_text("")  # mkdir under a file fails, even for root
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    got = _cache.numba_cache_dir()
    assert _inside(got, Path(tempfile.gettempdir()).resolve())
    assert got.is_dir() and not _inside(got, home)
