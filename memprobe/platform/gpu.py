"""Declared facts (beside the flow, never into inference): what the CUDA driver (and NVML, when
`pynvml` is importable) *says* about the GPU. Shown beside the measured values; the scan may use
them to choose sweep ranges (how far to sweep), never to decide a level.

Readers take the device object as an argument (numba.cuda's `Device`, whose attributes are the
CU_DEVICE_ATTRIBUTE_* names), so tests pass a fake device with the same attribute names; the
CUDA simulator's device has none of them.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from memprobe.result import Declared, DeclaredCache, GpuFacts

# The unified L1 / shared-memory array per SM is not a device attribute: NVIDIA tuning guides.
UNIFIED_L1_SHARED_BYTES_BY_CC: dict[tuple[int, int], int] = {
    (7, 0): 128 << 10, (7, 5): 96 << 10, (8, 0): 192 << 10, (8, 6): 128 << 10,
    (8, 7): 192 << 10, (8, 9): 128 << 10, (9, 0): 256 << 10, (10, 0): 256 << 10,
    (12, 0): 128 << 10,
}
FP32_LANES_PER_SM_BY_CC: dict[tuple[int, int], int] = {
    (7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128,
    (10, 0): 128, (12, 0): 128,
}

# attribute name (CU_DEVICE_ATTRIBUTE_<name>) -> key in the declared dict
_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("MULTIPROCESSOR_COUNT", "sm_count"),
    ("L2_CACHE_SIZE", "l2_bytes"),
    ("MAX_SHARED_MEMORY_PER_BLOCK", "shared_per_block_bytes"),
    ("MAX_SHARED_MEMORY_PER_BLOCK_OPTIN", "shared_per_block_optin_bytes"),
    ("MAX_SHARED_MEMORY_PER_MULTIPROCESSOR", "shared_per_sm_bytes"),
    ("MAX_THREADS_PER_MULTIPROCESSOR", "max_threads_per_sm"),
    ("MAX_THREADS_PER_BLOCK", "max_threads_per_block"),
    ("MAX_BLOCKS_PER_MULTIPROCESSOR", "max_blocks_per_sm"),
    ("MAX_REGISTERS_PER_MULTIPROCESSOR", "registers_per_sm"),
    ("WARP_SIZE", "warp_size"),
    ("CLOCK_RATE", "max_clock_khz"),
    ("MEMORY_CLOCK_RATE", "memory_clock_khz"),
    ("GLOBAL_MEMORY_BUS_WIDTH", "memory_bus_width_bits"),
    ("PERSISTING_L2_CACHE_MAX_SIZE", "l2_persisting_max_bytes"),
    ("PCI_BUS_ID", "pci_bus_id"),
)


def _attr(device: Any, name: str) -> Any:
    """One attribute, or None where the driver (or a fake device) does not have it."""
    try:
        v = getattr(device, name)
    except Exception:
        return None
    return int(v) if isinstance(v, (int,)) or hasattr(v, "__index__") else v


def _name(device: Any) -> str:
    n = getattr(device, "name", None)
    if isinstance(n, bytes):
        n = n.decode(errors="replace")
    return str(n) if n else "NVIDIA GPU"


def theoretical_memory_gbs(memory_clock_khz: int | None, bus_width_bits: int | None) -> float | None:
    """DDR (two transfers per memory clock) x bus width: the datasheet HBM peak, in GB/s."""
    if not memory_clock_khz or not bus_width_bits:
        return None
    return memory_clock_khz * 1e3 * 2 * (bus_width_bits / 8) / 1e9


def declared_gpu(device: Any, memory_info: tuple[int, int] | None = None,
                 nvml: dict[str, Any] | None = None) -> Declared:
    """Declared facts of `device` (numba.cuda Device or a fake with the same attribute names).

    memory_info: (free, total) bytes from the context, when the caller has one; nvml: extra
    facts from `nvml_facts()` (filled where the driver attribute is missing)."""
    d: dict[str, Any] = {}
    cc = getattr(device, "compute_capability", None)
    for attr, key in _ATTRIBUTES:
        d[key] = _attr(device, attr)
    nv = nvml or {}
    if d.get("max_clock_khz") is None and nv.get("max_sm_clock_mhz"):
        d["max_clock_khz"] = int(nv["max_sm_clock_mhz"]) * 1000
    if d.get("memory_clock_khz") is None and nv.get("max_memory_clock_mhz"):
        d["memory_clock_khz"] = int(nv["max_memory_clock_mhz"]) * 1000
    cc_t = tuple(cc) if cc else None
    unified = UNIFIED_L1_SHARED_BYTES_BY_CC.get(cc_t) if cc_t else None
    l2 = d.pop("l2_bytes")
    facts = GpuFacts(
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        **{k: v for k, v in d.items()},
        theoretical_memory_gbs=theoretical_memory_gbs(d.get("memory_clock_khz"), d.get("memory_bus_width_bits")),
        l1_shared_unified_per_sm_bytes=unified,
        l1_min_bytes=(unified - d["shared_per_sm_bytes"]) if unified and d.get("shared_per_sm_bytes") else None,
        fp32_lanes_per_sm=FP32_LANES_PER_SM_BY_CC.get(cc_t) if cc_t else None,
        memory_free_bytes=int(memory_info[0]) if memory_info else None,
        nvml={k: v for k, v in nv.items() if v is None or isinstance(v, (str, int, float, bool))},
    )
    caches = []
    # with the max-L1 carve-out the chase kernels ask for (shared_memory_carveout="maxl1") and
    # no shared memory, L1 may take the whole unified array
    if unified:
        caches.append(DeclaredCache(level=1, type="Data", size_bytes=unified, scope="per SM"))
    if l2:
        caches.append(DeclaredCache(level=2, type="Unified", size_bytes=int(l2), scope="shared by all SMs"))
    lanes = facts.fp32_lanes_per_sm
    return Declared(
        source="CUDA device attributes" + (" + NVML" if nv else ""), model=_name(device), caches=caches,
        cores_logical=facts.sm_count, cores_usable=facts.sm_count,
        memory_total_bytes=int(memory_info[1]) if memory_info else None,
        memory_available_bytes=int(memory_info[0]) if memory_info else None,
        clock_ghz=facts.max_clock_khz / 1e6 if facts.max_clock_khz else None,
        fma_flops_per_cycle={"float32": 2 * lanes if lanes else None},
        gpu=facts)


def nvml_facts(index: int = 0) -> dict[str, Any]:
    """A few NVML facts (clocks, power limit, driver) when `pynvml` is importable; else {}."""
    if importlib.util.find_spec("pynvml") is None:
        return {}
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(index)
            out: dict[str, Any] = {"source": "NVML"}
            for key, fn in (
                ("max_sm_clock_mhz", lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)),
                ("max_memory_clock_mhz", lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM)),
                ("power_limit_w", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
                ("driver_version", lambda: pynvml.nvmlSystemGetDriverVersion()),
                ("sm_clock_now_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
            ):
                try:
                    v = fn()
                    out[key] = v.decode() if isinstance(v, bytes) else v
                except Exception:
                    out[key] = None
            return out
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return {}


def _one_line(msg: str) -> str:
    lines = [ln.strip(" :") for ln in str(msg).splitlines() if ln.strip(" :")]
    return lines[-1] if lines else str(msg)


def gpu_available() -> tuple[bool, str]:
    """(True, device name) when numba.cuda can run kernels on a real GPU, else (False, one
    line saying why): numba-cuda missing, the simulator switched on, no driver, no device."""
    if importlib.util.find_spec("numba_cuda") is None:
        return False, "numba-cuda is not installed (pip install 'memprobe[gpu]')"
    from memprobe.probes.gpu.clock import simulator_enabled

    if simulator_enabled():
        return False, ("the CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1): it runs kernels in "
                       "Python and measures nothing")
    try:
        from numba import cuda
    except Exception as exc:  # broken install, missing cuda-bindings
        return False, f"numba.cuda cannot be imported: {_one_line(str(exc))}"
    try:
        if not cuda.is_available():
            from numba.cuda.cudadrv.error import CudaSupportError

            try:
                cuda.get_current_device()
            except CudaSupportError as exc:  # no driver library, or one too old
                return False, f"the NVIDIA driver could not be used ({_one_line(str(exc)).rstrip('.')})"
            except Exception as exc:
                return False, f"CUDA is not usable: {_one_line(str(exc))}"
            return False, "CUDA is not usable on this machine"
        dev = cuda.get_current_device()
        return True, _name(dev)
    except Exception as exc:
        return False, f"CUDA is not usable: {_one_line(str(exc))}"
