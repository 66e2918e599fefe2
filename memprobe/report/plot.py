"""Stage 5 of the flow (probe -> samples -> inference -> result -> **report**): one figure to a file.

`memprobe plot scan.json --what latency|bandwidth|roofline --out FILE.{png,svg,pdf}` calls
`plot()`: the same figures as the HTML report (figures.py), saved alone for papers and slides.
A scan with several devices gets one panel per device that has the data, stacked.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from memprobe.report import figures as F
from memprobe.result import DeviceResult, ScanResult

FIGURES = ("latency", "bandwidth", "roofline")
FORMATS = ("png", "svg", "pdf")


def _has(what: str, dev: DeviceResult) -> bool:
    if what == "latency":
        return bool(F.latency_curves(dev))
    if what == "bandwidth":
        return bool(F.bandwidth_curves(dev))
    return bool(F.compute_ceilings(dev) or any(F.level_bandwidth(lv) for lv in dev.levels))


def plot(result: ScanResult, what: str, out_path: Path | str, device: str | None = None) -> None:
    """Write one figure of `result` to `out_path`; the format comes from the suffix.

    Raises ValueError (a one-line message for the CLI) for an unknown figure, an unknown
    suffix, a device the scan lacks, or a scan that holds no data for that figure.
    """
    out_path = Path(out_path)
    if what not in FIGURES:
        raise ValueError(f"unknown figure {what!r}: choose one of {', '.join(FIGURES)}")
    fmt = out_path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"cannot tell the format from {out_path.name!r}: "
                         f"name the file with one of .{', .'.join(FORMATS)}")
    if device is not None and device not in result.devices:
        raise ValueError(f"this scan has no {device!r} device (it has: {', '.join(result.devices) or 'none'})")
    keys = [device] if device else list(result.devices)
    keys = [k for k in keys if _has(what, result.devices[k])]
    if not keys:
        raise ValueError(f"this scan has no {what} data (not measured in this scan)")
    with F.style(f"plot-{what}"):
        if len(keys) == 1:
            fig = F.device_figure(result, what, keys[0])
        else:
            heights = [F.figure_height(what, result.devices[k], F.training_points(result, k)) for k in keys]
            fig = Figure(figsize=(9.6, sum(heights)))
            subs = fig.subfigures(len(keys), 1, height_ratios=heights)
            for sub, k in zip(subs, keys):
                dev = result.devices[k]
                if what == "latency":
                    F.latency_figure(dev, fig=sub)
                elif what == "bandwidth":
                    F.bandwidth_figure(dev, fig=sub)
                else:
                    F.roofline_figure(dev, F.training_points(result, k), fig=sub)
        # metadata: keep output reproducible (no creation date); PNG/PDF/SVG all accept None dates
        meta = {"Creator": None} if fmt == "svg" else {"Software": None} if fmt == "png" else {"Creator": None}
        fig.savefig(out_path, format=fmt, metadata=meta)
