"""Stage 5 of the flow (... -> result -> **report**), for many machines: `memprobe compare` of
three or more scans. One row per scan (host), one column per key figure, each figure's median
across the fleet, and the outliers by a robust rule, as a pandas DataFrame (written as CSV
beside the HTML), a self-contained HTML page and a few lines for the terminal.

Outliers: a value whose robust z-score |0.6745 (x - median) / MAD| is above OUTLIER_Z (Iglewicz
and Hoaglin's rule; the median absolute deviation ignores the outliers themselves, where a mean
and a standard deviation would be pulled towards them), or, where the fleet agrees so closely
that the MAD is under MIN_SPREAD of the median, a value more than MIN_SPREAD from the median.
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


def outliers(df) -> dict[str, list[int]]:
    """{column: row indices} of the key figures' outliers (see the module's rule)."""
    out: dict[str, list[int]] = {}
    for col, _unit, _higher in KEY_FIGURES:
        if col not in df.columns:
            continue
        x = df[col].astype(float)
        vals = x.dropna()
        if len(vals) < 3:
            continue
        med = float(vals.median())
        mad = float((vals - med).abs().median())
        if med and mad >= MIN_SPREAD * abs(med):
            z = 0.6745 * (x - med).abs() / mad
            bad = z > OUTLIER_Z
        else:
            bad = (x - med).abs() > MIN_SPREAD * abs(med)
        idx = [int(i) for i in df.index[bad.fillna(False)]]
        if idx:
            out[col] = idx
    return out


def render_fleet(summaries: list[ScanSummary]) -> tuple[str, str, list[str]]:
    """(HTML page, CSV text, one line per outlier for the terminal)."""
    from memprobe.report import figures as F
    from memprobe.report.html import _svg, environment, num

    df = fleet_frame(summaries)
    bad = outliers(df)
    lines = [f"outlier: {df.at[i, 'host']} {col} = {num(df.at[i, col])} (fleet median {num(df[col].median())})"
             for col, idx in bad.items() for i in idx]
    cols = [c for c, _, _ in KEY_FIGURES if c in df.columns]
    units = {c: u for c, u, _ in KEY_FIGURES}
    rows = []
    for i in df.index:
        rows.append({"host": df.at[i, "host"], "started_at": df.at[i, "started_at"],
                     "complete": bool(df.at[i, "complete"]),
                     "cells": [{"v": (F.size_text(df.at[i, c]) if units[c] == "B" else num(df.at[i, c])),
                                "out": i in bad.get(c, [])} for c in cols],
                     "out": any(i in v for v in bad.values())})
    medians = [F.size_text(df[c].median()) if units[c] == "B" else num(df[c].median()) for c in cols]
    figs = [{"col": c, "fig": _svg(lambda c=c: F.fleet_figure(df, c, units[c], bad.get(c, [])), f"fleet-{k}")}
            for k, c in enumerate(cols) if c in bad or c in ("memory triad threads_all", "memory latency_ns")]
    models = sorted({m for m in df["cpu_model"] if m})
    html = environment().get_template("fleet.html").render(
        title=f"memprobe fleet: {len(df)} scans", n=len(df), cols=cols, units=units, rows=rows, medians=medians,
        outlier_lines=lines, figures=figs,
        unlike=f"the scans come from {len(models)} CPU models: {', '.join(models)}" if len(models) > 1 else "")
    return html, df.to_csv(index=False), lines
