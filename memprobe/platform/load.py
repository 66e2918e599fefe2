"""Beside the flow (probe -> samples -> inference -> result -> report): what the host is doing
while we measure, CPU time stolen from this machine (steal time), so a figure measured in a
busy spell can be flagged instead of trusted.

A virtual machine's vCPU is a host thread; while the host runs something else on that core,
the guest's clock keeps going and every timed loop reads slow. The kernel counts that time as
"steal" in /proc/stat. It is not a declared fact and never feeds inference: the scan records it
per stage beside its timings, and warns when a stage ran while the host took a share of a CPU
(cache edges then read small and bandwidths low; see docs/method.md, "Noise and steal time").
"""

from __future__ import annotations

from pathlib import Path

# a share of one CPU the host may take before a stage's figures are flagged (on a 2-vCPU AMD EPYC
# Zen 3 KVM guest steal stays under 1 % while the host is quiet: docs/validation.md)
STEAL_NOTABLE_FRACTION = 0.05

# /proc/stat per-CPU fields: user nice system idle iowait irq softirq steal guest guest_nice;
# guest time is already inside user/nice, so the total stops at steal
_FIELDS_IN_TOTAL = 8
_STEAL = 7
# /proc/stat counts in ticks (10 ms at the usual 100 Hz): one stolen tick in a 0.2 s stage would
# read as 5 %, so a share is given only over at least this many ticks of a CPU (1 s)
MIN_TICKS = 100


def read_cpu_times(proc_root: str | Path = "/proc") -> dict[str, tuple[int, int]]:
    """{"cpu0": (steal, total), ...} in clock ticks from /proc/stat; {} when unreadable (not
    Linux, or a kernel too old to count steal)."""
    try:
        text = (Path(proc_root) / "stat").read_text()
    except OSError:
        return {}
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or not parts[0].startswith("cpu") or not parts[0][3:].isdigit():
            continue  # the "cpu" total line, or a name we cannot match to a CPU number
        try:
            ticks = [int(v) for v in parts[1:1 + _FIELDS_IN_TOTAL]]
        except ValueError:
            continue
        if len(ticks) > _STEAL:
            out[parts[0]] = (ticks[_STEAL], sum(ticks))
    return out


def max_steal_fraction(before: dict[str, tuple[int, int]],
                       after: dict[str, tuple[int, int]],
                       cpus: set[int] | None = None) -> float | None:
    """The largest share of one CPU's time the host took between two readings (0..1), or None
    when too little was counted in between (under MIN_TICKS on every CPU, or no /proc/stat).
    The largest, not the mean: a probe runs on one CPU, and a neighbour on the other must not
    halve what it saw. `cpus`: only these (the ones this process may run on); all when None or
    when none of them appears in /proc/stat (a container that renumbers its CPUs)."""
    names = [c for c in after if c in before]
    if cpus is not None and any(int(c[3:]) in cpus for c in names):
        names = [c for c in names if int(c[3:]) in cpus]
    worst = None
    for cpu in names:
        (steal0, total0), (steal1, total1) = before[cpu], after[cpu]
        if total1 - total0 >= MIN_TICKS:
            frac = max(0, steal1 - steal0) / (total1 - total0)
            worst = frac if worst is None else max(worst, frac)
    return worst
