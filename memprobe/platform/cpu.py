"""Declared CPU facts: cache levels from sysfs, model/flags/clock from py-cpuinfo, cores and
memory from psutil. Each reader takes its root path so tests run it on fixture trees.
Nothing here feeds inference; it is shown beside the measurement."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

from memprobe.result import CpuFacts, Declared, DeclaredCache

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)\s*$", re.IGNORECASE)
_MULT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int | None:
    """sysfs writes cache sizes as '32K', '512K', '32768K'."""
    m = _SIZE_RE.match(text)
    if not m:
        return None
    return int(m.group(1)) * _MULT[m.group(2).upper()]


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_sysfs_caches(sysfs_root: str | Path = "/sys", cpu: int = 0) -> list[dict[str, Any]]:
    """Cache levels of one CPU as sysfs declares them (likwid's CacheLevel fields)."""
    base = Path(sysfs_root) / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cache"
    caches: list[dict[str, Any]] = []
    if not base.is_dir():
        return caches
    for idx in sorted(base.glob("index*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0):
        level = _read(idx / "level")
        if level is None or not level.isdigit():
            continue
        size = _read(idx / "size")
        line = _read(idx / "coherency_line_size")
        ways = _read(idx / "ways_of_associativity")
        shared = _read(idx / "shared_cpu_list")
        shared_cpus = parse_cpu_list(shared) if shared else []
        caches.append({
            "level": int(level),
            "type": _read(idx / "type") or "Unknown",
            "size_bytes": parse_size(size) if size else None,
            "line_size_bytes": int(line) if line and line.isdigit() else None,
            "ways": int(ways) if ways and ways.isdigit() else None,
            "shared_cpu_list": shared or None,
            "shared_by_cpus": len(shared_cpus) or None,
        })
    return caches


def declared_data_caches(caches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The data path only (drop instruction caches), nearest first: what a chase can see."""
    return sorted((c for c in caches if c["type"] in ("Data", "Unified")), key=lambda c: c["level"])


def read_proc_cpuinfo(proc_root: str | Path = "/proc") -> dict[str, Any] | None:
    """Model, vendor, flags and clock from Linux's /proc/cpuinfo (its first processor), or None
    where that file is missing or has no flags (another OS, another architecture's format)."""
    text = _read(Path(proc_root) / "cpuinfo")
    if not text:
        return None
    first: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            first.setdefault(key.strip(), value.strip())
    if "flags" not in first:
        return None
    model = first.get("model name") or platform.processor() or "unknown CPU"
    m = re.search(r"@\s*([\d.]+)\s*GHz", model)
    mhz = first.get("cpu MHz")
    hz = float(m.group(1)) * 1e9 if m else (float(mhz) * 1e6 if mhz else None)
    return {"model": model, "vendor": first.get("vendor_id"), "arch": platform.machine(),
            "flags": sorted(first["flags"].split()), "hz_advertised": hz}


def read_cpuinfo() -> dict[str, Any]:
    """Model, flags and advertised clock: from /proc/cpuinfo on Linux, else from py-cpuinfo,
    whose cpuid probe runs in a subprocess for about a second (a tenth of a quick scan)."""
    fast = read_proc_cpuinfo()
    if fast is not None:
        return fast
    try:
        import cpuinfo  # py-cpuinfo

        info = cpuinfo.get_cpu_info()
    except Exception as exc:  # a broken cpuid must not stop a scan
        return {"error": f"py-cpuinfo failed: {exc}"}
    hz = info.get("hz_advertised") or info.get("hz_actual") or [None]
    return {
        "model": info.get("brand_raw") or platform.processor() or "unknown CPU",
        "vendor": info.get("vendor_id_raw"),
        "arch": info.get("arch_string_raw") or platform.machine(),
        "flags": sorted(info.get("flags", [])),
        "hz_advertised": hz[0] if isinstance(hz, (list, tuple)) else None,
    }


def fma_flops_per_cycle(flags: list[str], dtype_bytes: int = 8) -> int | None:
    """Declared peak FLOP/cycle/core of the ISA (2 FMA pipes assumed for AVX2/AVX-512 cores).

    Declared only: it sits beside the measured FMA rate, it never feeds it.
    """
    lanes_bits = 512 if "avx512f" in flags else 256 if "avx2" in flags or "avx" in flags else 128
    lanes = lanes_bits // (8 * dtype_bytes)
    fma = "fma" in flags or "avx512f" in flags or "asimd" in flags
    return lanes * 2 * (2 if fma else 1)


def read_memory(proc_root: str | Path = "/proc") -> dict[str, Any]:
    import psutil

    vm = psutil.virtual_memory()
    return {"total_bytes": int(vm.total), "available_bytes": int(vm.available)}


def read_thp(sysfs_root: str | Path = "/sys") -> str | None:
    """Transparent huge page mode, e.g. 'always [madvise] never' -> 'madvise'."""
    raw = _read(Path(sysfs_root) / "kernel" / "mm" / "transparent_hugepage" / "enabled")
    if raw is None:
        return None
    m = re.search(r"\[(\w+)\]", raw)
    return m.group(1) if m else raw


def declared_cpu(sysfs_root: str | Path = "/sys", with_cpuinfo: bool = True) -> Declared:
    """Everything the machine declares about its CPU, for the `declared` record of the result."""
    import psutil

    mem = read_memory()
    out = Declared(
        source="sysfs + py-cpuinfo + psutil",
        caches=[DeclaredCache(**c) for c in read_sysfs_caches(sysfs_root)],
        cores_logical=psutil.cpu_count(logical=True),
        cores_physical=psutil.cpu_count(logical=False),
        cores_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        memory_total_bytes=mem["total_bytes"], memory_available_bytes=mem["available_bytes"],
        cpu=CpuFacts(transparent_hugepage=read_thp(sysfs_root)),
    )
    if with_cpuinfo:
        info = read_cpuinfo()
        out.error = info.get("error")
        out.model = info.get("model")
        flags = info.get("flags") or []
        hz = info.get("hz_advertised")
        out.clock_ghz = hz / 1e9 if hz else None
        out.cpu = CpuFacts(vendor=info.get("vendor"), arch=info.get("arch"), flags=flags, hz_advertised=hz,
                           transparent_hugepage=out.cpu.transparent_hugepage)
        out.fma_flops_per_cycle = {"float32": fma_flops_per_cycle(flags, 4),
                                   "float64": fma_flops_per_cycle(flags, 8)}
    return out


def machine_facts(sysfs_root: str | Path = "/sys", proc_root: str | Path = "/proc") -> dict[str, Any]:
    """What makes two scans comparable or not: CPU model and microcode, kernel, THP mode,
    frequency governor, NUMA nodes, and whether this is a virtual machine. Cheap (no cpuid probe:
    /proc/cpuinfo's text), so every scan records it."""
    info: dict[str, str] = {}
    text = _read(Path(proc_root) / "cpuinfo") or ""
    for line in text.splitlines():
        if ":" in line:
            k, v = (p.strip() for p in line.split(":", 1))
            info.setdefault(k, v)
    nodes = list((Path(sysfs_root) / "devices" / "system" / "node").glob("node[0-9]*"))
    flags = info.get("flags", "").split()
    return {
        "cpu_model": info.get("model name") or info.get("Model") or platform.processor() or None,
        "microcode": info.get("microcode"),
        "kernel": platform.release() or None,
        "transparent_hugepage": read_thp(sysfs_root),
        "governor": _read(Path(sysfs_root) / "devices" / "system" / "cpu" / "cpu0" / "cpufreq" / "scaling_governor"),
        "numa_nodes": len(nodes) or None,
        "virtual_machine": ("hypervisor" in flags) or (Path(sysfs_root) / "hypervisor" / "type").exists(),
    }
