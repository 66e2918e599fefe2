"""Stage 5 of the flow (... -> result -> **report**), for many machines: `memprobe compare` of
three or more scans. One row per scan (host), one column per key figure, each figure's median
across the fleet, and the outliers by a robust rule, as a pandas DataFrame (written as CSV
beside the HTML), a self-contained HTML page and a few lines for the terminal.

Outliers: a value whose robust z-score |0.6745 (x - median) / MAD| is above OUTLIER_Z (Iglewicz
and Hoaglin's rule; the median absolute deviation ignores the outliers themselves, where a mean
and a standard deviation would be pulled towards them), or, where the fleet agrees so closely
that the MAD is under MIN_SPREAD of the median, a value more than MIN_SPREAD from the median --
and, either way, whose run-to-run band does not touch the fleet's. A scan's band of a figure is
the figure ± the range of the samples it was taken from (a cache's size: its interval;
`ScanSummary.bands`, memprobe/spread.py); the fleet's band runs from the median of the scans'
lows to the median of their highs. A few scans of one machine differ by about their own
spread, which the MAD of three or four values cannot tell from a fault; a node whose figure
lies beyond what its samples and the fleet's can explain is still named. A value whose stage
ran beside busy neighbours by the scan's own record (`ScanSummary.busy`) is never named: it may
read slow for a reason outside the node; the table marks it, and it is left out of the median
and the MAD. Summaries without bands (jsonl lines of older versions) are judged by the robust
rule alone.

Rows are named by host; where hosts repeat (several scans of one machine), by the label the
caller gives each scan (its file or folder) too.
"""

from __future__ import annotations

from typing import Any

from memprobe.result import ScanSummary

OUTLIER_Z = 3.5
MIN_SPREAD = 0.05  # a fleet that agrees within this is judged by this instead of its MAD
# the key figures, in the order of the table: (column, unit, higher is better)
KEY_FIGURES = (
    ("L1 size_bytes", "B", True), ("L2 size_bytes", "B", True), ("L3 size_bytes", "B", True),
    ("L1 latency_ns", "ns", False), ("L2 latency_ns", "ns", False), ("L3 latency_ns", "ns", False),
    ("memory latency_ns", "ns", False),
    ("L1 read threads_all", "GB/s", True), ("L2 read threads_all", "GB/s", True),
    # memory on one thread too: on a shared host the all-thread figures move most between runs
    # (neighbours share the bus), so a slow node's memory shows first on one thread
    ("memory read threads_1", "GB/s", True), ("memory triad threads_1", "GB/s", True),
    ("memory read threads_all", "GB/s", True), ("memory triad threads_all", "GB/s", True),
    ("memory copy threads_all", "GB/s", True), ("float64 threads_all", "GFLOP/s", True),
)


def row(s: ScanSummary) -> dict[str, Any]:
    out: dict[str, Any] = {"host": s.host, "started_at": s.started_at, "complete": s.complete,
                           "cpu_model": s.cpu_model or ""}
    for lv in s.levels:
        out[f"{lv.name} size_bytes"] = lv.size_bytes
        out[f"{lv.name} latency_ns"] = lv.latency_ns
    out["memory latency_ns"] = s.memory_latency_ns
    out.update(s.bandwidth_gbs)
    out.update(s.fma_gflops)
    return out


def fleet_frame(summaries: list[ScanSummary]):
    """The fleet as a DataFrame: one row per scan, the key figures as columns (those present)."""
    import pandas as pd

    df = pd.DataFrame([row(s) for s in summaries])
    cols = ["host", "started_at", "complete", "cpu_model"] + [c for c, _, _ in KEY_FIGURES if c in df.columns]
    return df[cols]


def outliers(df, bands: list[dict[str, list[float]]] | None = None,
             busy: list[list[str]] | None = None) -> dict[str, list[int]]:
    """{column: row indices} of the key figures' outliers (see the module's rule); `bands`:
    each row's ScanSummary.bands (None: the robust rule alone); `busy`: each row's figures
    measured beside busy neighbours (never named)."""
    import pandas as pd

    out: dict[str, list[int]] = {}
    for col, _unit, _higher in KEY_FIGURES:
        if col not in df.columns:
            continue
        x = df[col].astype(float)
        # values measured beside busy neighbours are neither judged nor part of the yardstick
        judged = pd.Series([col not in b for b in busy] if busy is not None else [True] * len(x), index=df.index)
        vals = x[judged].dropna()
        if len(vals) < 3:
            continue
        med = float(vals.median())
        mad = float((vals - med).abs().median())
        if med and mad >= MIN_SPREAD * abs(med):
            z = 0.6745 * (x - med).abs() / mad
            bad = z > OUTLIER_Z
        else:
            bad = (x - med).abs() > MIN_SPREAD * abs(med)
        if bands is not None:
            lo = pd.Series([(b.get(col) or [v, v])[0] for b, v in zip(bands, x)], index=df.index)
            hi = pd.Series([(b.get(col) or [v, v])[1] for b, v in zip(bands, x)], index=df.index)
            keep = judged & x.notna()
            fleet_lo, fleet_hi = float(lo[keep].median()), float(hi[keep].median())
            bad = bad & ((hi < fleet_lo) | (lo > fleet_hi))
        bad = bad & judged
        idx = [int(i) for i in df.index[bad.fillna(False)]]
        if idx:
            out[col] = idx
    return out


def _labels(summaries: list[ScanSummary], labels: list[str] | None) -> list[str]:
    """Each row's name: its host, and where hosts repeat the caller's label for the scan too."""
    hosts = [s.host for s in summaries]
    if labels is None or len(set(hosts)) == len(hosts):
        return hosts
    return [f"{h} ({lab})" if lab and lab != h else h for h, lab in zip(hosts, labels)]


def _size(v: Any) -> str:
    from memprobe.report import figures as F

    return F.size_text(None if v is None or v != v else float(v))


def render_fleet(summaries: list[ScanSummary], labels: list[str] | None = None) -> tuple[str, str, list[str]]:
    """(HTML page, CSV text, one line per outlier for the terminal). `labels`: one per scan
    (its file or folder), shown beside the host where hosts repeat."""
    from memprobe.report import figures as F
    from memprobe.report.html import _svg, environment, num

    df = fleet_frame(summaries)
    names = _labels(summaries, labels)
    bad = outliers(df, [s.bands for s in summaries], [s.busy for s in summaries])
    units = {c: u for c, u, _ in KEY_FIGURES}
    text = lambda c, v: _size(v) if units[c] == "B" else num(v)
    lines = [f"outlier: {names[i]} {col} = {text(col, df.at[i, col])} (fleet median {text(col, df[col].median())})"
             for col, idx in bad.items() for i in idx]
    cols = [c for c, _, _ in KEY_FIGURES if c in df.columns]
    rows = []
    for i in df.index:
        rows.append({"host": names[i], "started_at": df.at[i, "started_at"],
                     "complete": bool(df.at[i, "complete"]),
                     "cells": [{"v": text(c, df.at[i, c]), "out": i in bad.get(c, []),
                                "busy": c in summaries[i].busy} for c in cols],
                     "out": any(i in v for v in bad.values())})
    medians = [text(c, df[c].median()) for c in cols]
    named = df.assign(host=names)  # the figures name outliers as the table does
    figs = [{"col": c, "fig": _svg(lambda c=c: F.fleet_figure(named, c, units[c], bad.get(c, [])), f"fleet-{k}")}
            for k, c in enumerate(cols) if c in bad or c in ("memory triad threads_all", "memory latency_ns")]
    models = sorted({m for m in df["cpu_model"] if m})
    html = environment().get_template("fleet.html").render(
        title=f"memprobe fleet: {len(df)} scans", n=len(df), cols=cols, units=units, rows=rows, medians=medians,
        outlier_lines=lines, figures=figs,
        unlike=f"the scans come from {len(models)} CPU models: {', '.join(models)}" if len(models) > 1 else "")
    return html, df.to_csv(index=False), lines
