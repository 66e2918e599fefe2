"""Beside the flow (result -> **check**): does a scan hold up against a reference scan of the
same kind of machine? For a Slurm prolog, an NHC check or a ReFrame test: figure by figure,
each with its own tolerance, a pass or a failure, never a judgement of its own on the
hardware. Reads result records only.

Figures and their default tolerances (the direction that fails):
- each cache's size (25 %, smaller fails); informational on a virtual machine's last cache,
  whose slice moves with its neighbours;
- each level's latency and memory's (10 %, slower fails); informational on a virtual
  machine's last cache too: its plateau is the part of the slice other guests left, and read
  11.8-16.6 ns over thirty scans of one quiet 2-vCPU guest;
- bandwidth per level, kernel and thread count (10 %, lower fails);
- FMA ceilings per dtype and thread count (10 %, lower fails).
Flagged figures (infer/plausibility.py) are skipped on either side.

The rule: a figure fails only when it is worse than the baseline's by more than its tolerance
AND by more than the run-to-run spread the two scans themselves carry. Each scan gives each
figure a band: a numeric figure ± its spread (memprobe/spread.py: the range of the samples the
figure was taken from, or a latency plateau's p90 - p10), a cache's size its interval (the
capacities its curve cannot tell apart). A figure fails when its band and the baseline's do
not touch, the gap in the failing direction being larger than the two spreads together, and
the gap is past the tolerance. Two honest scans of one machine differ by about their own
spread, so they pass; a node slower than its samples can explain fails.

A figure that falls short while the scan's own record says its stage ran beside busy
neighbours (other processes of the machine at or past the scan's `others_notable_percent` of a
CPU, or the host's steal at or past its `steal_notable_percent`: the thresholds the scan warned
by) is not judged: status "busy", listed with the load, neither a pass nor a failure. Such a
figure reads slow for a reason the scan recorded and the node may not own; scan again on a
quiet node (`memprobe scan --wait-quiet`) to judge it.

Levels pair as every view pairs them (report/pairing.py): by overlapping size intervals, so a
level one scan found and the other did not is a warning naming it, never compared with a
different level. Paired caches' intervals mostly overlap, so their sizes hold (or are
informational). The one exception: the single unpaired level each scan has between the same
paired neighbours, at the same latency plateau, is that level with its size moved (a VM's
slice of the host L3); its size is then judged, or informational on a VM's last cache. A cache
that shrank onto a different plateau shows as two warnings (the baseline's level missing, a
smaller one found).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from memprobe import spread as S
from memprobe.report.pairing import interval, pair_with_scan
from memprobe.report.text import size_text
from memprobe.result import DeviceResult, Level, ScanResult

TOLERANCES = {"size": 0.25, "latency": 0.10, "bandwidth": 0.10, "flops": 0.10}


@dataclass
class Check:
    """One figure of the scan against the baseline's. `measured_band` and `baseline_band`:
    (low, high), the figure ± its spread in that scan (a cache's size: its interval)."""

    figure: str
    measured: float
    baseline: float
    tolerance: float
    status: str  # "ok" | "fail" | "info" | "busy" (falls short beside busy neighbours: not judged)
    unit: str = ""  # "B" | "ns" | "GB/s" | "GFLOP/s"
    measured_band: Optional[tuple[float, float]] = None
    baseline_band: Optional[tuple[float, float]] = None
    busy: str = ""  # the measured scan's stage load, where the figure fell short beside it

    @property
    def ratio(self) -> float:
        return self.measured / self.baseline if self.baseline else float("nan")

    @property
    def within_spread(self) -> bool:
        """The two bands touch: the gap is no larger than the two scans' spreads together."""
        m = self.measured_band or (self.measured, self.measured)
        b = self.baseline_band or (self.baseline, self.baseline)
        return m[1] >= b[0] and b[1] >= m[0]

    def text(self, v: float) -> str:
        return size_text(v) if self.unit == "B" else f"{v:.3g}"


@dataclass
class CheckReport:
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def busy(self) -> list[Check]:
        return [c for c in self.checks if c.status == "busy"]

    @property
    def judged(self) -> list[Check]:
        return [c for c in self.checks if c.status in ("ok", "fail")]

    @property
    def ok(self) -> bool:
        return not self.failed


def _band(v: float, spread: float) -> tuple[float, float]:
    return (v - spread, v + spread)


def _add(rep: CheckReport, figure: str, unit: str, got, base, tol: float, lower_fails: bool,
         got_band: Optional[tuple[float, float]], base_band: Optional[tuple[float, float]],
         info: bool = False, busy: str = "") -> None:
    if got is None or base is None or not base > 0:
        return
    c = Check(figure, float(got), float(base), tol, "ok", unit, got_band, base_band)
    beyond_tol = got < base * (1 - tol) if lower_fails else got > base * (1 + tol)
    m, b = c.measured_band or (got, got), c.baseline_band or (base, base)
    worse_band = m[1] < b[0] if lower_fails else m[0] > b[1]
    if info:
        c.status = "info"
    elif beyond_tol and worse_band:
        c.status, c.busy = ("busy", busy) if busy else ("fail", "")
    rep.checks.append(c)


def _level_text(dev: DeviceResult, lv: Level, which: str) -> str:
    iv = lv.size_interval_bytes
    within = f", interval {size_text(iv[0])} – {size_text(iv[1])}" if iv and len(iv) == 2 else ""
    lat = f", {lv.latency_ns:.3g} ns" if lv.latency_ns else ""
    return f"{dev.kind}: {which}'s {lv.name} ({size_text(lv.size_bytes)}{lat}{within})"


def check_device(dev: DeviceResult, base: DeviceResult, rep: CheckReport, tol: dict[str, float],
                 vm_last_cache_info: bool) -> None:
    pairs = pair_with_scan(dev, base)
    caches = [p for p in pairs if not p.is_memory and p.measured is not None and p.other is not None]
    last = caches[-1] if caches else None
    for p in pairs:
        lv, bl = p.measured, p.other
        if lv is None or bl is None:
            if not p.is_memory:
                which, one = ("the scan", lv) if lv is not None else ("the baseline", bl)
                other = "the baseline" if lv is not None else "the scan"
                rep.warnings.append(f"{_level_text(dev, one, which)} has no level of {other} at its size "
                                    f"and latency plateau: not compared")
            continue
        name = f"{dev.kind} {bl.name}"
        if not p.is_memory:
            _add(rep, f"{name} size_bytes", "B", lv.size_bytes, bl.size_bytes, tol["size"], True,
                 interval(lv), interval(bl),
                 info=vm_last_cache_info and p is last)
        if not (lv.flagged("latency") or bl.flagged("latency")) and lv.latency_ns is not None \
                and bl.latency_ns is not None:
            _add(rep, f"{name} latency_ns", "ns", lv.latency_ns, bl.latency_ns, tol["latency"], False,
                 _band(lv.latency_ns, S.latency_spread_ns(lv)), _band(bl.latency_ns, S.latency_spread_ns(bl)),
                 info=vm_last_cache_info and p is last, busy=S.busy_text(dev, S.LATENCY_STAGES))
        for kern, per in (bl.bandwidth_gbs or {}).items():
            for tk, v in per.items():
                fig = f"bandwidth/{kern}/{tk}"
                if lv.flagged(fig) or bl.flagged(fig):
                    continue
                got = ((lv.bandwidth_gbs or {}).get(kern) or {}).get(tk)
                if got is None or v is None:
                    continue
                _add(rep, f"{name} {kern} {tk} GB/s", "GB/s", got, v, tol["bandwidth"], True,
                     _band(got, S.bandwidth_spread(dev, lv, kern, tk)), _band(v, S.bandwidth_spread(base, bl, kern, tk)),
                     busy=S.busy_text(dev, S.BANDWIDTH_STAGES))
    if dev.compute is not None and base.compute is not None:
        for dtype, per in base.compute.fma.items():
            for tk, v in per.items():
                fig = f"fma/{dtype}/{tk}"
                got = (dev.compute.fma.get(dtype) or {}).get(tk)
                if dev.compute.flagged(fig) or base.compute.flagged(fig) or got is None or v is None:
                    continue
                _add(rep, f"{dev.kind} FMA {dtype} {tk} GFLOP/s", "GFLOP/s", got, v, tol["flops"], True,
                     _band(got, S.fma_spread(dev, dtype, tk)), _band(v, S.fma_spread(base, dtype, tk)),
                     busy=S.busy_text(dev, S.COMPUTE_STAGES))


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
