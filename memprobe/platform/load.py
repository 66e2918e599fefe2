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


# ---- this machine's other processes ----------------------------------------------------------
# a share of one CPU other processes in this machine may use beside a stage before its figures
# are flagged: a busy neighbour on one of two vCPUs takes a whole one (100 %)
OTHERS_NOTABLE_FRACTION = 0.25
QUIET_FRACTION = 0.10  # --wait-quiet: the machine counts as quiet below this share of a CPU


def busy_seconds(proc_root: str | Path = "/proc") -> float | None:
    """CPU seconds every process of this machine has run (user, nice, system, irq, softirq) from
    the /proc/stat total; None where unreadable."""
    import os

    try:
        first = (Path(proc_root) / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu" or len(first) < 8:
        return None
    ticks = sum(int(v) for v in (first[1], first[2], first[3], first[6], first[7]))
    return ticks / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds this process (all its threads) and its finished children have run (a child
    such as py-cpuinfo's probe is the scan's own work, not a neighbour's)."""
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OthersMeter:
    """CPU time the machine's *other* processes used between start() and share(): the busy
    total from /proc/stat less this process's own, as a share of one CPU over the wall time."""

    def start(self) -> "OthersMeter":
        import time

        self.t0, self.busy0, self.own0 = time.perf_counter(), busy_seconds(), own_seconds()
        return self

    def share(self) -> float | None:
        import time

        busy = busy_seconds()
        wall = time.perf_counter() - self.t0
        if busy is None or self.busy0 is None or wall < 0.2:
            return None
        return max(0.0, (busy - self.busy0) - (own_seconds() - self.own0)) / wall


def load_average() -> float | None:
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def wait_quiet(limit_s: float, window_s: float = 1.0) -> tuple[bool, float]:
    """Wait until the other processes use under QUIET_FRACTION of a CPU for one window, at most
    `limit_s`; (quiet, seconds waited)."""
    import time

    t0 = time.perf_counter()
    while True:
        m = OthersMeter().start()
        time.sleep(window_s)
        share = m.share()
        waited = time.perf_counter() - t0
        if share is not None and share < QUIET_FRACTION:
            return True, waited
        if waited >= limit_s:
            return False, waited
