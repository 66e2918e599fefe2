"""Stage 5 of the flow (graph + scan -> prediction -> **report**): one network's predicted
training step as a page (`memprobe predict SPEC --out DIR`) and as terminal lines. Renders a
`train.spec.PredictResult` and the scan it was predicted for; computes nothing of its own
beyond sums for display."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from memprobe.report import figures as F
from memprobe.report.html import _svg, bound_words, environment, pct
from memprobe.report.text import size_text


def duration(s: float | None) -> str:
    """Seconds in the unit a reader takes in at once: 84 us, 3.1 ms, 1.24 s."""
    if s is None or not F.finite(s):
        return "—"
    if s < 1e-3:
        return f"{s * 1e6:.3g} us"
    if s < 1.0:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def split_by_bound(pr: Any) -> list[dict[str, Any]]:
    """The predicted step's time by what bounds it: each op group under its bound (the op's
    measured rate, a level's bandwidth, call overhead), and the unmodelled ops apart."""
    parts: dict[str, float] = {}
    for g in pr.ops:
        parts[bound_words(g["bound"])] = parts.get(bound_words(g["bound"]), 0.0) + g["predicted_s"]
    rest = sum(u["time_s"] or 0.0 for u in pr.unmodelled)
    if rest:
        parts["unmodelled (their lone replay time)"] = rest
    other = pr.predicted_s - sum(parts.values())
    if other > 1e-3 * pr.predicted_s:
        parts["autograd's calls between the ops"] = other
    total = pr.predicted_s or 1.0
    return [{"what": k, "time": duration(v), "share": pct(v / total, signed=False), "width": round(100 * v / total, 1)}
            for k, v in sorted(parts.items(), key=lambda kv: -kv[1])]


def op_rows(pr: Any, limit: int | None = None) -> list[dict[str, Any]]:
    rows = [{"op": g["op"], "count": g["count"], "gflop": F.fmt3(g["flops"] / 1e9) if g["flops"] else "—",
             "bytes": size_text(g["bytes"]), "level": g["level"] or "—", "bound": bound_words(g["bound"]),
             "time": duration(g["predicted_s"]), "share": pct(g["share"], signed=False)} for g in pr.ops]
    return rows[:limit] if limit else rows


def _roofline(pr: Any, dev: Any) -> Any:
    pts = [SimpleNamespace(flops=g["flops"], bytes=g["bytes"], measured_s=g["predicted_s"], level=g["level"] or "",
                           bound=g["bound"] if g["bound"] in ("compute", "overhead") else "memory",
                           threads=pr.threads)
           for g in pr.ops if g["flops"] and g["bytes"] and g["predicted_s"]]
    return F.roofline_figure(dev, pts, point_name="op group (predicted)", sized_name="operands from")


def predict_context(pr: Any, scan: Any) -> dict[str, Any]:
    dev = scan.devices.get("cpu")
    err = pr.error
    return {
        "title": f"memprobe predict: {pr.model} on {scan.host}",
        "generator": "memprobe",
        "model": pr.model, "host": scan.host, "started_at": scan.started_at,
        "batch": pr.batch, "threads": f"{pr.n_threads} thread{'s' if pr.n_threads != 1 else ''}",
        "optimizer": pr.optimizer, "predicted": duration(pr.predicted_s), "measured": duration(pr.measured_s),
        "measured_range": (f"{len(pr.measured_samples_s)} steps, {duration(min(pr.measured_samples_s))}-"
                           f"{duration(max(pr.measured_samples_s))}") if len(pr.measured_samples_s) > 1 else "",
        "error": pct(err) if err is not None else "—", "coverage": pct(pr.coverage, signed=False),
        "bound": bound_words(pr.bound), "gflop": F.fmt3(pr.flops / 1e9), "kernels": pr.kernels,
        "distinct": pr.distinct_ops, "live": size_text(pr.peak_live_bytes),
        "peak_baseline": duration(pr.flops_peak_s), "replay_baseline": duration(pr.replay_sum_s),
        "split": split_by_bound(pr), "rows": op_rows(pr),
        "unmodelled": [{"op": u["name"], "count": u["count"], "time": duration(u["time_s"]),
                        "share": pct(u["share"], signed=False) if u["share"] is not None else "—", "why": u["why"]}
                       for u in pr.unmodelled],
        "roofline": _svg(lambda: _roofline(pr, dev), f"predict-roof-{pr.model}-{pr.batch}") if dev is not None else
        {"svg": None, "missing": "the scan has no CPU", "error": None},
    }


def as_view(rec: Any) -> Any:
    """A scan's `StepPrediction` record in the shape the page's helpers read (ops as dicts)."""
    from dataclasses import asdict

    d = asdict(rec)
    err = (rec.predicted_s - rec.measured_s) / rec.measured_s if rec.measured_s else None
    return SimpleNamespace(**{**d, "error": err})


def scan_predictions(scan: Any) -> list[dict[str, Any]]:
    """The scan report's section for `memprobe scan --predict SPEC`: each prediction's summary,
    its time by bound, its op groups and what was not modelled."""
    out = []
    for rec in scan.predictions:
        v = as_view(rec)
        ctx = predict_context(v, scan)
        ctx["spec"] = rec.spec
        out.append(ctx)
    return out


def render_predict(pr: Any, scan: Any) -> str:
    """The prediction as one self-contained HTML page, in the report's style."""
    return environment().get_template("predict.html").render(**predict_context(pr, scan))
