"""Beside the flow (result -> **check**): does a scan hold up against a reference scan of the
same kind of machine? For a Slurm prolog, an NHC check or a ReFrame test: figure by figure,
each with its own tolerance, a pass or a failure, never a judgement of its own on the
hardware. Reads result records only; levels are paired as every view pairs them (by size).

Figures and their default tolerances (the direction that fails):
- each cache's size (25 %, smaller fails); informational on a virtual machine's last cache,
  whose slice moves with its neighbours;
- each level's latency and memory's (10 %, slower fails);
- bandwidth per level, kernel and thread count (10 %, lower fails);
- FMA ceilings per dtype and thread count (10 %, lower fails).
Flagged figures (infer/plausibility.py) are skipped on either side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memprobe.report.pairing import pair_with_scan
from memprobe.result import DeviceResult, ScanResult

TOLERANCES = {"size": 0.25, "latency": 0.10, "bandwidth": 0.10, "flops": 0.10}


@dataclass
class Check:
    figure: str
    measured: float
    baseline: float
    tolerance: float
    status: str  # "ok" | "fail" | "info"

    @property
    def ratio(self) -> float:
        return self.measured / self.baseline if self.baseline else float("nan")


@dataclass
class CheckReport:
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failed


def _add(rep: CheckReport, figure: str, got, base, tol: float, lower_fails: bool, info: bool = False) -> None:
    if got is None or base is None or not base > 0:
        return
    bad = got < base * (1 - tol) if lower_fails else got > base * (1 + tol)
    rep.checks.append(Check(figure, float(got), float(base), tol, "info" if info else ("fail" if bad else "ok")))


def check_device(dev: DeviceResult, base: DeviceResult, rep: CheckReport, tol: dict[str, float],
                 vm_last_cache_info: bool) -> None:
    pairs = pair_with_scan(dev, base)
    caches = [p for p in pairs if not p.is_memory and p.measured is not None and p.other is not None]
    last = caches[-1] if caches else None
    for p in pairs:
        lv, bl = p.measured, p.other
        if lv is None or bl is None:
            if not p.is_memory:
                rep.warnings.append(f"{dev.kind}: a level of one scan has no counterpart in the other "
                                    f"({(lv or bl).name}, {(lv or bl).size_bytes} bytes)")
            continue
        name = f"{dev.kind} {bl.name}"
        if not p.is_memory:
            _add(rep, f"{name} size_bytes", lv.size_bytes, bl.size_bytes, tol["size"], lower_fails=True,
                 info=vm_last_cache_info and p is last)
        if not (lv.flagged("latency") or bl.flagged("latency")):
            _add(rep, f"{name} latency_ns", lv.latency_ns, bl.latency_ns, tol["latency"], lower_fails=False)
        for kern, per in (bl.bandwidth_gbs or {}).items():
            for tk, v in per.items():
                fig = f"bandwidth/{kern}/{tk}"
                if lv.flagged(fig) or bl.flagged(fig):
                    continue
                got = ((lv.bandwidth_gbs or {}).get(kern) or {}).get(tk)
                _add(rep, f"{name} {kern} {tk} GB/s", got, v, tol["bandwidth"], lower_fails=True)
    if dev.compute is not None and base.compute is not None:
        for dtype, per in base.compute.fma.items():
            for tk, v in per.items():
                fig = f"fma/{dtype}/{tk}"
                if dev.compute.flagged(fig) or base.compute.flagged(fig):
                    continue
                _add(rep, f"{dev.kind} FMA {dtype} {tk} GFLOP/s", (dev.compute.fma.get(dtype) or {}).get(tk), v,
                     tol["flops"], lower_fails=True)


def unlike(a: ScanResult, b: ScanResult) -> list[str]:
    """What differs between the two machines in ways that move the figures."""
    out = []
    ma, mb = a.machine, b.machine
    for key, what in (("cpu_model", "CPU models"), ("numa_nodes", "NUMA node counts"),
                      ("transparent_hugepage", "transparent huge page modes"), ("kernel", "kernels")):
        va, vb = getattr(ma, key), getattr(mb, key)
        if va and vb and va != vb:
            out.append(f"comparing unlike machines: {what} differ ({va} / {vb})")
    if a.settings.quick != b.settings.quick:
        out.append("comparing a --quick scan with a default one: fewer sizes and repetitions on one side")
    return out


def check_scan(scan: ScanResult, baseline: ScanResult, tolerance: float | None = None) -> CheckReport:
    """Every figure of `scan` against `baseline`, device by device (CPU with CPU, GPU with GPU)."""
    tol = dict(TOLERANCES)
    if tolerance is not None:
        tol.update(latency=tolerance, bandwidth=tolerance, flops=tolerance)
    rep = CheckReport(warnings=unlike(scan, baseline))
    vm = bool(scan.machine.virtual_machine or baseline.machine.virtual_machine)
    for key, base in baseline.devices.items():
        dev = scan.devices.get(key)
        if dev is None:
            rep.warnings.append(f"the scan has no {key} device; the baseline has one")
            continue
        check_device(dev, base, rep, tol, vm_last_cache_info=vm)
    if not scan.complete:
        rep.warnings.append("the scan is incomplete: only the figures it measured are checked")
    return rep
