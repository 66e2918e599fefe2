"""Stage 5 of the flow (probe -> samples -> inference -> result -> **report**): two scans side by side.

`memprobe compare A.json B.json` calls `render_compare(a, b)`: one self-contained HTML page (same
rules as the report: inline CSS and SVG, no request) with both summaries and hierarchy diagrams,
a level-by-level table with B/A ratios, the latency and bandwidth curves overlaid, and the compute
ceilings. Devices are paired by kind (CPU with CPU, GPU with GPU); when the two scans share no
kind (a CPU scan against a GPU scan) their first devices are paired, so CPU against GPU works.
"""

from __future__ import annotations

import statistics
from typing import Any

from memprobe.report import figures as F
from memprobe.report.html import _diagram_widths, _level_view, _svg, environment, num, pct
from memprobe.report.pairing import pair_with_scan
from memprobe.result import DeviceResult, ScanResult


def _ratio(a: Any, b: Any) -> str:
    return f"{b / a:.2f}×" if F.finite(a) and F.finite(b) and a else "—"


def _scan_view(tag: str, r: ScanResult) -> dict[str, Any]:
    devices = []
    for key, dev in r.devices.items():
        widths = _diagram_widths(dev.levels)
        devices.append({"key": key, "kind": dev.kind, "name": dev.name, "clock": num(dev.clock_ghz),
                        "line": F.size_text(dev.line_size_bytes),
                        "levels": [_level_view(lv, i, widths) for i, lv in enumerate(dev.levels)]})
    errs = [abs(p.error) for p in r.training.points if F.finite(p.error)]
    st = r.settings
    settings = {"device": st.device, "profile": "quick" if st.quick else "default", "seed": st.seed,
                "memprobe": st.memprobe_version or "—"}
    return {"tag": tag, "host": r.host, "started_at": r.started_at, "complete": r.complete,
            "duration": num(r.duration_s), "settings": settings, "devices": devices,
            "warnings": [w.text if where == "scan" else f"{where}: {w.text}" for where, w in r.all_warnings()],
            "training": {"n": len(errs), "median_error": pct(statistics.median(errs), signed=False) if errs else "—"}}


def _pairs(a: ScanResult, b: ScanResult) -> list[tuple[DeviceResult, DeviceResult]]:
    common = [k for k in a.devices if k in b.devices]
    if common:
        return [(a.devices[k], b.devices[k]) for k in common]
    if a.devices and b.devices:
        return [(next(iter(a.devices.values())), next(iter(b.devices.values())))]
    return []


def _level_rows(da: DeviceResult, db: DeviceResult) -> list[dict[str, Any]]:
    """Levels side by side as report/pairing.py pairs them (by size), memory with memory."""
    rows = []
    for pr in pair_with_scan(da, db):
        la, lb = pr.measured, pr.other
        ra = F.level_bandwidth(la) if la else None
        rb = F.level_bandwidth(lb) if lb else None
        rows.append({
            "a": la.name if la else "—", "b": lb.name if lb else "—",
            "size_a": F.size_text(la.size_bytes) if la and la.size_bytes else ("memory" if la else "—"),
            "size_b": F.size_text(lb.size_bytes) if lb and lb.size_bytes else ("memory" if lb else "—"),
            "size_ratio": _ratio(la.size_bytes if la else None, lb.size_bytes if lb else None),
            "flag": pr.flagged,
            "lat_a": num(la.latency_ns) if la else "—", "lat_b": num(lb.latency_ns) if lb else "—",
            "lat_ratio": _ratio(la.latency_ns if la else None, lb.latency_ns if lb else None),
            "bw_a": num(ra[0]) if ra else "—", "bw_b": num(rb[0]) if rb else "—",
            "bw_ratio": _ratio(ra[0] if ra else None, rb[0] if rb else None),
        })
    return rows


def _compute_rows(da: DeviceResult, db: DeviceResult) -> list[dict[str, Any]]:
    ca = {name: v for name, v, _ in F.compute_ceilings(da)}
    cb = {name: v for name, v, _ in F.compute_ceilings(db)}
    names = list(dict.fromkeys(list(ca) + list(cb)))
    return [{"name": n, "a": num(ca.get(n)), "b": num(cb.get(n)), "ratio": _ratio(ca.get(n), cb.get(n))}
            for n in names]


def _prediction_view(pred: dict[str, Any] | None) -> dict[str, Any] | None:
    """`compare A B --predict SPEC`: one network's step predicted from each scan alone
    (train/on_scan.compare_scans) and the operations whose bound or level changes."""
    if pred is None:
        return None
    from memprobe.report.predict import duration

    a, b, rows = pred["a"], pred["b"], pred["rows"]
    step = rows[0]
    return {"model": a.model, "batch": a.batch, "threads": a.threads, "optimizer": a.optimizer,
            "a": duration(a.predicted_s), "b": duration(b.predicted_s),
            "ratio": f"{step['ratio']:.2f}×" if step["ratio"] else "—",
            "partial": [f"{r.machine}: {'; '.join(r.missing)}" for r in (a, b) if getattr(r, "partial", False)],
            "rows": [{"op": r["op"], "count": r["count"], "a": duration(r["here_s"]), "b": duration(r["there_s"]),
                      "bound": f"{r['bound_here']} → {r['bound_there']}",
                      "level": f"{r['level_here']} → {r['level_there']}"} for r in rows[1:21]]}


def render_compare(a: ScanResult, b: ScanResult, prediction: dict[str, Any] | None = None) -> str:
    """Two scans side by side as one self-contained HTML page (the caller writes it); with
    `prediction` (train/on_scan.compare_scans of A and B), one network's step on both."""
    same_host = a.host == b.host
    tag_a = f"A: {a.host}" + (f" ({a.started_at})" if same_host else "")
    tag_b = f"B: {b.host}" + (f" ({b.started_at})" if same_host else "")
    pairs = []
    for i, (da, db) in enumerate(_pairs(a, b)):
        series = [(f"A {da.kind.upper()}", da), (f"B {db.kind.upper()}", db)]
        pairs.append({
            "title": f"{da.kind.upper()} {da.name}  vs  {db.kind.upper()} {db.name}",
            "levels": _level_rows(da, db),
            "latency": _svg(lambda s=series: F.latency_overlay_figure(s), f"cmp{i}-lat"),
            "bandwidth": _svg(lambda s=series: F.bandwidth_overlay_figure(s, "triad"), f"cmp{i}-bw"),
            "compute": _compute_rows(da, db),
        })
    ctx = {"title": f"memprobe compare: {a.host} vs {b.host}",
           "scans": [_scan_view(tag_a, a), _scan_view(tag_b, b)],
           "pairs": pairs, "incomplete": [s for s, r in ((tag_a, a), (tag_b, b)) if not r.complete],
           "prediction": _prediction_view(prediction)}
    return environment().get_template("compare.html").render(**ctx)
