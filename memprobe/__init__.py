"""memprobe: measure a machine's memory hierarchy and how it shapes training speed."""

# First, before any memprobe module imports numba: Numba's cache goes to a per-user folder, never
# into the installed package, where `pip uninstall` would leave it behind (see memprobe/_cache.py).
from memprobe._cache import configure_numba_cache as _configure_numba_cache

_configure_numba_cache()

__version__ = "0.1.0"
