"""Where Numba keeps memprobe's compiled kernels: a per-user cache folder, never the package.

Not a stage of the data flow; set up once, at the top of `memprobe/__init__.py`, before anything in
memprobe imports numba. The kernels are `@njit(cache=True)`. Left to itself, Numba writes their
cache files (`*.nbi`, `*.nbc`) into the `__pycache__` beside each source file. In an installed
package that is site-packages/memprobe/..., and `pip uninstall` does not remove files it did not
install. The leftover `memprobe/` folder then shadows a later editable install
(`ImportError: cannot import name '__version__' from 'memprobe' (unknown location)`).

So `NUMBA_CACHE_DIR` is set to `$XDG_CACHE_HOME/memprobe/numba` (default `~/.cache/memprobe/numba`;
`~/Library/Caches` on macOS, `%LOCALAPPDATA%` on Windows). If that folder cannot be created or
written, a per-user folder under `tempfile.gettempdir()` is used instead. A non-empty
`NUMBA_CACHE_DIR` set by the user is left alone. The variable applies to the whole process (and
to its children), so other Numba code running next to memprobe caches there too.

Numba reads its environment when `numba.core.config` is first imported. If numba is already
imported, the value is written into `numba.core.config.CACHE_DIR` as well, because the compiler's
next `reload_config()` would otherwise not pick it up before the module-level `@njit(cache=True)`
decorators choose their cache locations. Numba keys each cache entry by source path and mtime, so
a regular install and an editable checkout never read each other's entries.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ENV_VAR = "NUMBA_CACHE_DIR"


def _platform_cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore a relative value
        return Path(xdg)
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"])
    home = Path.home()  # RuntimeError when no home can be found: the caller falls back
    if sys.platform == "darwin":
        return home / "Library" / "Caches"
    return home / ".cache"


def _usable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _temp_fallback() -> Path:
    try:
        user = str(os.getuid())  # type: ignore[attr-defined]
    except AttributeError:  # Windows
        user = os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"memprobe-{user}" / "numba"


def numba_cache_dir() -> Path:
    """The folder memprobe asks Numba to cache compiled kernels in (created here if missing)."""
    try:
        preferred = _platform_cache_home() / "memprobe" / "numba"
    except (RuntimeError, KeyError, OSError):
        preferred = None
    if preferred is not None and _usable(preferred):
        return preferred
    fallback = _temp_fallback()
    _usable(fallback)  # best effort: if even this fails, Numba warns and compiles without a cache
    return fallback


def configure_numba_cache() -> str:
    """Point Numba's cache at the per-user folder unless the user chose one; return the folder."""
    chosen = os.environ.get(ENV_VAR, "")
    if not chosen:
        chosen = str(numba_cache_dir())
        os.environ[ENV_VAR] = chosen
    config = sys.modules.get("numba.core.config")
    if config is not None and not getattr(config, "CACHE_DIR", ""):
        config.CACHE_DIR = chosen
    return chosen


def user_cache_dir(name: str) -> Path:
    """A per-user folder `memprobe/<name>` in the platform's cache home (created here), the
    temporary folder's per-user one where that cannot be written: what memprobe keeps between
    runs on one machine (the measured op rates of `memprobe predict`)."""
    try:
        preferred = _platform_cache_home() / "memprobe" / name
    except (RuntimeError, KeyError, OSError):
        preferred = None
    if preferred is not None and _usable(preferred):
        return preferred
    fallback = _temp_fallback().parent / name
    _usable(fallback)
    return fallback
