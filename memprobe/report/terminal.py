"""Stage 5 of the flow (... -> result -> **report**), for the terminal: the tables the CLI
prints after a scan, a training study and the seed table, each fitting 80 columns. Renders
result records only; the CLI decides when to print them."""

from __future__ import annotations

import math
import sys

from memprobe.report.text import STUDY_MODEL_ORDER, size_text


def fmt(v: float | None, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def table(title: str):
    """A rich table that fits 80 columns: a rule under the header, no vertical borders."""
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")


def print_summary(result) -> None:
    """The levels against their declared caches, paired as the report pairs them."""
    from rich.console import Console

    from memprobe.report.pairing import pair_with_declared
    from memprobe.result import Code

    console = Console(stderr=False)
    for key, dev in result.devices.items():
        t = table(f"{key.upper()}: {dev.name}"
                            f"  (clock {fmt(dev.clock_ghz)} GHz measured, line {dev.line_size_bytes or '?'} B)")
        for col in ("level", "size", "declared", "ns", "cycles", "read GB/s 1/all", "flag"):
            t.add_column(col, justify="right" if col not in ("level", "flag") else "left")
        for pr in pair_with_declared(dev):
            lv, dc = pr.measured, pr.other
            declared = f"{dc.label} {size_text(dc.size_bytes)}" if dc is not None else ("-" if not pr.is_memory else "")
            flags = []
            if pr.flagged:
                d = pr.size_diff
                flags.append(f"size {d:+.0%}" if d is not None else ("not declared" if dc is None else "not found"))
            if lv is not None and lv.unstable:
                flags.append("unstable")
            if lv is None:
                t.add_row("-", "-", declared, "-", "-", "-", ", ".join(flags))
                continue
            bw = (lv.bandwidth_gbs or {}).get("read") or {}
            bw_s = f"{fmt(bw.get('threads_1'))} / {fmt(bw.get('threads_all'))}" if bw else "-"
            t.add_row(lv.name, size_text(lv.size_bytes) if lv.size_bytes else "memory", declared,
                      fmt(lv.latency_ns), fmt(lv.latency_cycles, ".1f"), bw_s, ", ".join(flags))
        console.print(t)
    if not result.complete:
        stops = [w.text for _, w in result.all_warnings() if w.code in (Code.STAGE_FAILED, Code.INTERRUPTED)]
        console.print("[bold red]incomplete scan[/]: " + "; ".join(stops))


def print_training(result, pts: list | None = None) -> None:
    """The study in 80 columns: one table per device and thread count (level, working set,
    batch, measured and predicted step, error, bound; a ! where the prediction missed by more
    than 25 %, with the likely cause below), the median errors, and the points the time budget
    left out."""
    from rich.console import Console

    tr = result.training
    pts = tr.points if pts is None else pts
    console = Console(stderr=False)
    if not pts:
        print("memprobe: no training points" + (f" ({len(tr.skipped)} left out by the time budget)"
                                                 if tr.skipped else ""), file=sys.stderr)
        return
    causes: dict[str, int] = {}
    order = {m: i for i, m in enumerate(STUDY_MODEL_ORDER)}
    for model, dev, th in sorted({(p.model, p.device, p.threads) for p in pts}, key=lambda k: (order.get(k[0], 9), k)):
        group = sorted((p for p in pts if (p.model, p.device, p.threads) == (model, dev, th)),
                       key=lambda p: (p.batch, p.working_set_bytes))
        t = table(f"{model} training step, {dev}, {threads_label(group[0])}: measured vs predicted")
        for col in ("level", "set", "batch", "measured", "predicted", "error", "bound"):
            t.add_column(col, justify="right" if col not in ("level", "bound") else "left")
        for p in group:
            why = p.miss_cause
            if why:
                causes[why] = causes.get(why, 0) + 1
            t.add_row(p.level, size_text(p.working_set_bytes), str(p.batch), ms(p.measured_s), ms(p.predicted_s),
                      (f"{p.error:+.0%}" if p.error is not None else "-") + (" !" if why else ""), str(p.bound or "-"))
        console.print(t)
        big = [abs(p.error) for p in group if p.batch >= 16 and p.error is not None]
        one = [abs(p.error) for p in group if p.batch == 1 and p.error is not None]
        console.print(f"median |error|: batch >= 16 {pct(big)} ({len(big)} points), batch 1 {pct(one)} "
                      f"({len(one)})", highlight=False)
    for why, n in causes.items():
        console.print(f"! {n} off by > 25 %, likely {why}", highlight=False)
    if tr.skipped:
        console.print(f"the time budget left out {len(tr.skipped)} of {len(pts) + len(tr.skipped)} points "
                      "(scan.json: training.skipped)", highlight=False)


def duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 5400:
        return f"{s / 3600:.1f} h"
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.3g} s"


def print_seed_table(result) -> None:
    """The seed table in 80 columns: the task projected here against the claim, the check's
    measured and predicted step and error (! past 25 %), then one line per row on its bound."""
    from rich.console import Console

    rows = result.training.seed_table
    if not rows:
        return
    console = Console(stderr=False, width=min(80, Console().width))
    t = table("seed table: projected here vs claimed; check = real steps, scaled down")
    for col in ("task", "dev", "projected", "claimed", "check meas", "check pred", "error"):
        t.add_column(col, justify="left" if col in ("task", "dev") else "right")
    for r in rows:
        err = "-" if r.check_error is None else f"{r.check_error:+.0%}" + (" !" if abs(r.check_error) > 0.25 else "")
        t.add_row(r.task, r.device, duration(r.predicted_s), duration(r.claimed_s), duration(r.check_measured_s),
                  duration(r.check_predicted_s), err)
    console.print(t)
    for r in rows:
        console.print(f"{r.task} ({r.device}): {r.bound_text or r.note}", highlight=False)
    gpu = result.training.settings.get("seed_table_gpu")
    if gpu:
        console.print(gpu, highlight=False)


def print_study_line(result) -> None:
    """After a scan: the training study in a line or two (median errors, misses, points the time
    budget left out); `memprobe train --scan` shows its tables."""
    tr = result.training
    if not tr.points:
        return
    models = [m for m in STUDY_MODEL_ORDER if any(p.model == m for p in tr.points)]
    parts = []
    for m in models:
        big = [abs(p.error) for p in tr.points if p.model == m and p.batch >= 16 and p.error is not None]
        parts.append(f"{m} {pct(big)}" if len(models) > 1 else pct(big))
    misses = sum(1 for p in tr.points if p.miss_cause)
    line = (f"training study: {len(tr.points)} points, median |error| {', '.join(parts)} at batch >= 16"
            + (f", {misses} off by > 25 % (causes in the report)" if misses else ""))
    print(line)
    if tr.skipped:
        print(f"the study's time budget left out {len(tr.skipped)} of {len(tr.points) + len(tr.skipped)} points")


def threads_label(p) -> str:
    return f"{p.n_threads} thread{'s' if p.n_threads != 1 else ''}"


def ms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms >= 0.1 else f"{ms * 1e3:.3g} us"


def pct(xs: list[float]) -> str:
    import statistics

    return f"{statistics.median(xs):.0%}" if xs else "-"


def print_prediction(pr) -> None:
    """One network's predicted step: the step (and the measured one, with the error), coverage,
    the op groups (count, GFLOP, bytes, operands' level, bound, time, share) and the
    unmodelled ops, in 80 columns."""
    from rich.console import Console

    from memprobe.report.predict import duration
    from memprobe.report.text import size_tick

    console = Console(stderr=False)
    line = (f"{pr.model}: batch {pr.batch}, {pr.n_threads} thread{'s' if pr.n_threads != 1 else ''}, "
            f"{pr.optimizer}: predicted step {duration(pr.predicted_s)}")
    if pr.measured_s is not None:
        line += f", measured {duration(pr.measured_s)} ({pr.error:+.1%})"
        if len(pr.measured_samples_s) > 1:  # the steps' own spread: how far one measurement can be read
            line += (f"; its {len(pr.measured_samples_s)} steps {duration(min(pr.measured_samples_s))}"
                     f"-{duration(max(pr.measured_samples_s))}")
    console.print(line, highlight=False)
    console.print(f"coverage {pr.coverage:.1%} of the predicted step; bound by "
                  f"{'op rate' if pr.bound == 'compute' else pr.bound}; naive answers: FLOPs at peak "
                  f"{duration(pr.flops_peak_s)}, kernels replayed alone {duration(pr.replay_sum_s)}",
                  highlight=False)
    t = table(f"op groups ({pr.kernels} kernels, {pr.distinct_ops} distinct); bound: rate = the op's "
              "own measured rate, a level = its bandwidth, call = overhead")
    for col in ("op", "n", "GFLOP", "bytes", "from", "bound", "time", "share"):
        t.add_column(col, justify="left" if col in ("op", "from", "bound") else "right", no_wrap=True,
                     overflow="ellipsis", min_width={"n": 3, "bytes": 5, "bound": 5, "share": 5, "from": 4}.get(col))
    short = {"compute": "rate", "overhead": "call", "memory": "mem"}
    groups = pr.ops
    for g in groups[:15]:
        name = g["op"].replace("aten.", "").replace(".default", "")
        t.add_row(name if len(name) <= 22 else name[:21] + "…", str(g["count"]),
                  f"{g['flops'] / 1e9:.2g}" if g["flops"] else "-", size_tick(g["bytes"]) or "0",
                  short.get(g["level"], g["level"] or "-"), short.get(g["bound"], g["bound"] or "-"),
                  duration(g["predicted_s"]), f"{g['share']:.0%}")
    if len(groups) > 15:
        t.add_row(f"{len(groups) - 15} more", "", "", "", "", "", "", f"{sum(g['share'] for g in groups[15:]):.0%}")
    console.print(t)
    for u in pr.unmodelled[:8]:
        share = f"{u['share']:.1%}" if u["share"] is not None else "share unknown"
        console.print(f"unmodelled: {u['name']} x{u['count']} ({share}): {u['why']}", highlight=False)
    if len(pr.unmodelled) > 8:
        console.print(f"unmodelled: {len(pr.unmodelled) - 8} more kinds (--json lists them all)", highlight=False)


def print_machine_changes(rows: list[dict]) -> None:
    """`predict --scan HERE --on THERE`: the step on each machine, the ratio, and the op groups
    whose bound or level changes, largest effect first."""
    from rich.console import Console

    from memprobe.report.predict import duration

    console = Console(stderr=False)
    step = rows[0]
    ratio = f"{step['ratio']:.2f}x" if step["ratio"] else "-"
    console.print(f"step: here {duration(step['here_s'])}, there {duration(step['there_s'])} (there / here "
                  f"{ratio}){' (partial: a lower bound)' if step['partial'] else ''}", highlight=False)
    if len(rows) == 1:
        console.print("no operation changes its bound or level between the two machines", highlight=False)
        return
    t = table("operations whose bound or level changes, largest effect first")
    for col in ("op", "n", "here", "there", "bound here > there", "from here > there"):
        t.add_column(col, justify="left" if col in ("op",) or col.startswith(("bound", "from")) else "right",
                     no_wrap=True)
    for r in rows[1:16]:
        name = r["op"].replace("aten.", "").replace(".default", "")
        t.add_row(name if len(name) <= 20 else name[:19] + "…", str(r["count"]), duration(r["here_s"]),
                  duration(r["there_s"]), f"{r['bound_here']} > {r['bound_there']}",
                  f"{r['level_here']} > {r['level_there']}")
    console.print(t)
