"""memprobe: measure a machine's memory hierarchy and how it shapes training speed."""

# First, before any memprobe module imports numba: Numba's cache goes to a per-user folder, never
# into the installed package, where `pip uninstall` would leave it behind (see memprobe/_cache.py).
from memprobe._cache import configure_numba_cache as _configure_numba_cache

from memprobe._target import configure_vector_width as _configure_vector_width

_configure_numba_cache()
# Full-width vectors (zmm on AVX-512) for every kernel, before any compiles (memprobe/_target.py).
_configure_vector_width()

__version__ = "0.1.0"
