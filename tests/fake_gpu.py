"""A device with the CUDA attribute names numba.cuda's Device exposes (CU_DEVICE_ATTRIBUTE_*),
for running the real GPU scan under the CUDA simulator (tests and tests/data/make_fixtures.py)."""

KiB = 1024


class FakeDevice:
    name = b"Fake H100 (simulator)"
    compute_capability = (9, 0)
    MULTIPROCESSOR_COUNT = 2
    L2_CACHE_SIZE = 16 * KiB
    MAX_SHARED_MEMORY_PER_BLOCK = 48 * KiB
    MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 227 * KiB
    MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 228 * KiB
    MAX_THREADS_PER_MULTIPROCESSOR = 64
    WARP_SIZE = 32
    CLOCK_RATE = 1_980_000  # kHz
    MEMORY_CLOCK_RATE = 2_619_000  # kHz
    GLOBAL_MEMORY_BUS_WIDTH = 5120
