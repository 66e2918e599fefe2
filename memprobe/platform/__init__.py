"""Declared facts (beside the flow, never into inference): what the OS, cpuinfo and the CUDA
driver *say* about the machine. Shown beside the measured values in the result and report."""

from memprobe.platform.cpu import declared_cpu, read_sysfs_caches

__all__ = ["declared_cpu", "read_sysfs_caches"]
