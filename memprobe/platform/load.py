"""What the host is doing while we measure: CPU time stolen from this machine (steal time).

A virtual machine's vCPU is a host thread; while the host runs something else on that core,
the guest's clock keeps going and every timed loop reads slow. The kernel counts that time as
"steal" in /proc/stat. It is not a declared fact and never feeds inference: the scan records it
per stage beside its timings, and warns when a stage ran while the host took a share of a CPU
(cache edges then read small and bandwidths low, see README "Known limits").
"""

from __future__ import annotations

from pathlib import Path

# a share of one CPU the host may take before a stage's figures are flagged: on the development
# VM steal stays under 1 % while the host is quiet
STEAL_NOTABLE_FRACTION = 0.05

# /proc/stat per-CPU fields: user nice system idle iowait irq softirq steal guest guest_nice;
# guest time is already inside user/nice, so the total stops at steal
_FIELDS_IN_TOTAL = 8
_STEAL = 7


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
        if not parts or not parts[0].startswith("cpu") or parts[0] == "cpu":
            continue
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
    when nothing was counted in between (too short, or no /proc/stat). The largest, not the
    mean: a probe runs on one CPU, and a neighbour on the other must not halve what it saw.
    `cpus`: only these (the ones this process may run on); None for all."""
    worst = None
    for cpu, (steal1, total1) in after.items():
        if cpu not in before or (cpus is not None and int(cpu[3:]) not in cpus):
            continue
        steal0, total0 = before[cpu]
        if total1 > total0:
            frac = max(0, steal1 - steal0) / (total1 - total0)
            worst = frac if worst is None else max(worst, frac)
    return worst
