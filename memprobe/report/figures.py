"""Stage 5 of the flow (probe -> samples -> inference -> result -> **report**): every figure.

One module draws every figure of the report, of `memprobe plot` and of `memprobe compare`, from
a `ScanResult` alone (never from the running machine). It uses matplotlib's object API
(`matplotlib.figure.Figure`, no pyplot), so drawing never touches a global backend or a display:
the Agg/SVG/PDF canvases are picked by `savefig` from the format.

Conventions, the same in every figure:
- sizes on a log2 axis with binary ticks (4K, 32K, 1M, 32M);
- the Okabe-Ito palette (safe for the common colour-vision deficiencies), one colour per level
  and per series, line styles as a second cue;
- inferred level boundaries as solid grey vertical lines, declared sizes as dashed ones;
- the spread of the repetitions as a band (min..max of the samples) around the median line;
- legends placed outside the axes, so they never hide data.
"""

from __future__ import annotations

import io
import math
import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import matplotlib
from matplotlib.figure import Figure, FigureBase
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from memprobe.report.text import STUDY_MODEL_TEXT, finite, fmt3, size_text, size_tick  # noqa: F401 (used by the views)
from memprobe.result import BANDWIDTH_KERNELS, THREAD_KEYS, Curve, DeviceResult, Level, ScanResult, TrainingPoint

# Okabe-Ito (Wong 2011, Nature Methods 8:441), black last: distinguishable in deuteranopia,
# protanopia and tritanopia, and in greyscale print by the line styles that go with them.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
LINESTYLES = ("-", "--", "-.", ":")
BOUNDARY_COLOUR = "0.35"
DECLARED_COLOUR = "#CC79A7"
THREAD_LABELS = {"threads_1": "1 thread", "threads_all": "all threads",
                 "threads_1_streaming": "1 thread, streaming stores",
                 "threads_all_streaming": "all threads, streaming stores"}
KERNEL_TITLES = {
    "read": "read  (sum += a[i])",
    "write": "write  (a[i] = s)",
    "copy": "copy  (a[i] = b[i])",
    "triad": "triad  (a[i] = b[i] + s·c[i])",
}
BOUND_MARKERS = {"compute": "o", "memory": "s", "overhead": "^"}

# rc settings for every figure: text stays text in SVG (small files, selectable, and no font is
# embedded or fetched; the browser draws it with a local sans-serif).
_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "font.size": 9.5,
    "axes.titlesize": 10,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8.5,
    "axes.grid": True,
    "grid.color": "0.88",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=list(OKABE_ITO)),
    "figure.dpi": 100,
    "savefig.dpi": 150,
}


class NoData(ValueError):
    """The scan holds nothing this figure could show (the section says 'not measured')."""


@contextmanager
def style(salt: str = "memprobe") -> Iterator[None]:
    """The report's rc settings; `salt` keeps SVG ids unique when several SVGs share a page."""
    with matplotlib.rc_context({**_RC, "svg.hashsalt": salt}):
        yield


def new_figure(width_in: float, height_in: float) -> Figure:
    # fixed margins in inches (see _margins) rather than constrained layout: the layout engine
    # measured every text twice and tripled the time to write an SVG (report budget: 3 s)
    return Figure(figsize=(width_in, height_in))


def _inches(fig: FigureBase) -> tuple[float, float]:
    return fig.bbox.width / fig.dpi, fig.bbox.height / fig.dpi


def _margins(fig: FigureBase, legend_rows: int = 0, top_in: float = 0.42, hspace_in: float = 0.0,
             left_in: float = 0.8, right_in: float = 0.25) -> None:
    """Margins in inches, whatever the figure size: room for the title, the axis labels and the
    legend rows under the axes (outside them, so the legend never hides data)."""
    w, h = _inches(fig)
    bottom_in = 0.62 + (0.2 * legend_rows + 0.12 if legend_rows else 0.0)
    kw: dict[str, float] = {}
    if hspace_in:
        kw["hspace"] = hspace_in / max(h / 2 - hspace_in, 0.5)
        kw["wspace"] = 0.12
    fig.subplots_adjust(left=left_in / w, right=1 - right_in / w, bottom=min(bottom_in / h, 0.6),
                        top=1 - top_in / h, **kw)


# ---- text and number helpers (also used by the HTML views) ----------------------------------
def label(text: Any) -> str:
    """Text from the JSON made safe for matplotlib: '$' would start mathtext (and can raise)."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def to_svg(fig: Figure, salt: str) -> str:
    """The figure as an inline <svg> element: no XML prolog, DOCTYPE or metadata block (the
    DOCTYPE names an external DTD and the metadata a licence URL; neither is needed inline)."""
    buf = io.StringIO()
    with style(salt):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    # matplotlib numbers its group ids per figure (figure_1, axes_1, ...): prefix every id and
    # every reference to one, so several SVGs in one page keep their ids unique
    prefix = re.sub(r"[^A-Za-z0-9_-]", "_", salt) + "-"
    svg = re.sub(r'(\sid=")([^"]+")', lambda m: m.group(1) + prefix + m.group(2), svg)
    svg = re.sub(r'(url\(#|href="#)', lambda m: m.group(1) + prefix, svg)
    return svg


# ---- axes helpers ------------------------------------------------------------------------
def _size_axis(ax: Any, lo: float, hi: float, axis: str = "x") -> None:
    """log2 axis over [lo, hi] with at most ~9 binary labels, a minor tick at every power of 2."""
    lo, hi = max(lo, 1.0), max(hi, lo * 2)
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=2)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo, hi)
    k0, k1 = math.ceil(math.log2(lo)), math.floor(math.log2(hi))
    exps = list(range(k0, k1 + 1))
    step = max(1, math.ceil(len(exps) / 9))
    # align labelled ticks to multiples of `step` from 2^0, so 4K, 32K, 256K ... or 1K, 1M, 1G
    major = [2.0**k for k in exps if k % step == 0] or [2.0**k0]
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(major))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: size_tick(v)))
    target.set_minor_locator(FixedLocator([2.0**k for k in exps]))
    target.set_minor_formatter(NullFormatter())


def _plain_log_axis(ax: Any, axis: str = "y") -> None:
    """log10 axis labelled 1, 2, 5, 10, 20 ... rather than 10^0: read at a glance."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: fmt3(v)))
    # no minor ticks: each tick is four artists, and they cost more time than they add meaning
    target.set_minor_locator(NullLocator())


def _x_range(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if finite(v) and v > 0]
    if not vals:
        return 1024.0, 2.0**30
    return min(vals) / 1.25, max(vals) * 1.25


def declared_sizes(dev: DeviceResult) -> list[tuple[str, int]]:
    """Declared data-cache capacities (label, bytes), nearest first (sysfs, CUDA attributes)."""
    return sorted(((c.label, int(c.size_bytes)) for c in dev.declared.data_caches()), key=lambda t: t[1])


def level_colour(i: int) -> str:
    return OKABE_ITO[i % len(OKABE_ITO)]


def _capacity_lines(ax: Any, dev: DeviceResult, names: bool = True, sizes: bool = False) -> bool:
    """Each inferred capacity as a vertical line, named (with its size) at the top; whether any
    lies inside the axes."""
    xform = ax.get_xaxis_transform()
    lo, hi = ax.get_xlim()
    drawn = False
    for lv in dev.levels:
        if finite(lv.size_bytes) and lo <= lv.size_bytes <= hi:
            ax.axvline(lv.size_bytes, color=BOUNDARY_COLOUR, lw=1.1, zorder=1)
            if names:
                text = f" {label(lv.name)} {size_text(lv.size_bytes)} " if sizes else f" {label(lv.name)}"
                ax.text(lv.size_bytes, 0.985, text, transform=xform, rotation=90,
                        va="top", ha="right", fontsize=8, color=BOUNDARY_COLOUR)
            drawn = True
    return drawn


def _boundaries(ax: Any, dev: DeviceResult, declared: bool = True, names: bool = True) -> list[Line2D]:
    """Inferred boundaries (solid) and declared sizes (dashed); returns legend proxies."""
    proxies: list[Line2D] = []
    xform = ax.get_xaxis_transform()
    lo, hi = ax.get_xlim()
    if _capacity_lines(ax, dev, names):
        proxies.append(Line2D([], [], color=BOUNDARY_COLOUR, lw=1.1, label="inferred boundary"))
    if declared:
        dd = False
        for name, size in declared_sizes(dev):
            if lo <= size <= hi:
                ax.axvline(size, color=DECLARED_COLOUR, lw=1.1, ls=(0, (4, 3)), zorder=1)
                if names:
                    ax.text(size, 0.015, f" {label(name)} declared", transform=xform, rotation=90,
                            va="bottom", ha="left", fontsize=7.5, color=DECLARED_COLOUR)
                dd = True
        if dd:
            proxies.append(Line2D([], [], color=DECLARED_COLOUR, lw=1.1, ls=(0, (4, 3)),
                                  label="declared size"))
    return proxies


def _band_line(ax: Any, curve: Curve, colour: str, ls: str, text: str, scale: float = 1.0) -> bool:
    pts = [p for p in curve.points if p.samples and finite(p.x) and p.x > 0]
    pts = [p for p in pts if all(finite(s) for s in p.samples)]
    if not pts:
        return False
    xs = [p.x for p in pts]
    med = [p.median * scale for p in pts]
    lo = [min(p.samples) * scale for p in pts]
    hi = [max(p.samples) * scale for p in pts]
    if any(len(p.samples) > 1 for p in pts):
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.18, lw=0, zorder=2)
    ax.plot(xs, med, color=colour, ls=ls, lw=1.6, marker="o", ms=2.6 if len(pts) > 1 else 5, label=text, zorder=3)
    return True


def _legend(fig: FigureBase, ax: Any, extra: Sequence[Any] = (), ncols: int = 1) -> int:
    """One legend under the axes; returns its number of rows (for _margins)."""
    handles, labels = ax.get_legend_handles_labels()
    handles = list(handles) + list(extra)
    labels = list(labels) + [h.get_label() for h in extra]
    if not handles:
        return 0
    _, h = _inches(fig)
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.04 / h), ncols=ncols,
               frameon=False, borderaxespad=0.0, handlelength=2.2, columnspacing=1.6)
    return math.ceil(len(handles) / ncols)


# ---- (c) latency ---------------------------------------------------------------------------
def latency_curves(dev: DeviceResult) -> list[Curve]:
    return [c for c in dev.curves if c.kind == "latency" and c.x_name == "size_bytes" and c.points]


def curve_label(c: Curve) -> str:
    """A reader's name for a curve: its label param, else the page kind for CPU chases, else
    its name."""
    if c.params.get("label"):
        return str(c.params["label"])
    page = c.params.get("page_kind")
    if page == "huge":
        return "huge pages (2 MiB)"
    if page in ("4k", "4K", "small"):
        return "4 KiB pages"
    return c.name.replace("latency_", "").replace("_", " ")


def draw_latency(ax: Any, dev: DeviceResult, prefix: str = "", linestyle: str | None = None,
                 colour_offset: int = 0, unit: str | None = None) -> tuple[bool, str]:
    """One line per latency curve (median, min..max band). Returns (drew anything, unit)."""
    curves = latency_curves(dev)
    drew = False
    units = {c.unit for c in curves}
    target = unit or ("ns" if "ns" in units else (sorted(units)[0] if units else "ns"))
    for i, c in enumerate(curves):
        scale = 1.0
        if c.unit != target:
            # cycles <-> ns through the device's *measured* clock (never the declared one)
            if c.unit == "cycles" and target == "ns" and finite(dev.clock_ghz) and dev.clock_ghz:
                scale = 1.0 / dev.clock_ghz
            elif c.unit == "ns" and target == "cycles" and finite(dev.clock_ghz):
                scale = dev.clock_ghz
            else:
                continue
        ls = linestyle or LINESTYLES[i % len(LINESTYLES)]
        drew |= _band_line(ax, c, level_colour(i + colour_offset), ls, label(prefix + curve_label(c)), scale)
    return drew, target


def latency_figure(dev: DeviceResult, title: str | None = None, fig: FigureBase | None = None) -> FigureBase:
    curves = latency_curves(dev)
    if not curves:
        raise NoData(f"no latency curve for {dev.kind}")
    fig = fig if fig is not None else new_figure(9.6, figure_height("latency", dev))
    ax = fig.add_subplot()
    xs = [p.x for c in curves for p in c.points]
    _size_axis(ax, *_x_range(xs + [s for _, s in declared_sizes(dev)]))
    drew, unit = draw_latency(ax, dev)
    if not drew:
        raise NoData(f"no latency samples for {dev.kind}")
    _plain_log_axis(ax, "y")
    ax.set_xlabel("working-set size (bytes, log scale)")
    ax.set_ylabel(f"latency per dependent load ({unit}, log scale)")
    ax.set_title(label(title or f"{dev.kind.upper()} {dev.name}: load latency against working set"),
                 loc="left")
    extra = _boundaries(ax, dev)
    extra.append(Patch(color="0.5", alpha=0.25, label="min..max of repetitions"))
    _margins(fig, _legend(fig, ax, extra, ncols=4))
    return fig


def latency_overlay_figure(series: Sequence[tuple[str, DeviceResult]]) -> Figure:
    """compare: the latency curves of several devices/scans on one axes (A solid, B dashed)."""
    fig = new_figure(9.6, 4.6)
    ax = fig.add_subplot()
    xs = [p.x for _, d in series for c in latency_curves(d) for p in c.points]
    if not xs:
        raise NoData("no latency curves in either scan")
    _size_axis(ax, *_x_range(xs))
    drew = False
    unit = "ns"
    for i, (name, dev) in enumerate(series):
        d, unit_i = draw_latency(ax, dev, prefix=f"{name}: ", linestyle=LINESTYLES[i % 4],
                                 colour_offset=2 * i, unit="ns")
        drew |= d
    if not drew:
        raise NoData("no latency samples in either scan")
    _plain_log_axis(ax, "y")
    ax.set_xlabel("working-set size (bytes, log scale)")
    ax.set_ylabel(f"latency per dependent load ({unit}, log scale)")
    ax.set_title("load latency against working set", loc="left")
    _margins(fig, _legend(fig, ax, ncols=2))
    return fig


# ---- (d) bandwidth -------------------------------------------------------------------------
def bandwidth_curves(dev: DeviceResult) -> dict[str, dict[str, Curve]]:
    """{kernel: {threads_key: curve}} from curves named bandwidth_<kernel>_<threads_key>."""
    out: dict[str, dict[str, Curve]] = {}
    for c in dev.curves:
        if c.kind != "bandwidth" or not c.points:
            continue
        name = c.name[len("bandwidth_"):] if c.name.startswith("bandwidth_") else c.name
        kernel, threads = name, str(c.params.get("threads", "")) or "threads_1"
        for tk in THREAD_KEYS:
            if name.endswith("_" + tk):
                kernel, threads = name[: -len(tk) - 1], tk
        if c.params.get("stores") == "streaming" and c.params.get("base_kernel"):
            # the non-temporal-store variant joins its base kernel's panel as its own series
            kernel, threads = str(c.params["base_kernel"]), f"{threads}_streaming"
        out.setdefault(kernel, {})[threads] = c
    order = {k: i for i, k in enumerate(BANDWIDTH_KERNELS)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


def bandwidth_figure(dev: DeviceResult, title: str | None = None, fig: FigureBase | None = None) -> FigureBase:
    curves = bandwidth_curves(dev)
    if not curves:
        raise NoData(f"no bandwidth curve for {dev.kind}")
    n = len(curves)
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    fig = fig if fig is not None else new_figure(9.6, figure_height("bandwidth", dev))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    xs = [p.x for per in curves.values() for c in per.values() for p in c.points]
    lo, hi = _x_range(xs)
    proxies: list[Line2D] = []
    for i, (kernel, per) in enumerate(curves.items()):
        ax = axes[i // cols][i % cols]
        _size_axis(ax, lo, hi)
        keys = sorted(per, key=lambda k: (k not in THREAD_KEYS, k))
        for j, tk in enumerate(keys):
            colour = OKABE_ITO[list(THREAD_LABELS).index(tk) if tk in THREAD_LABELS else 4 + j]
            _band_line(ax, per[tk], colour, LINESTYLES[j % 4], label(THREAD_LABELS.get(tk, tk)))
        ax.set_title(label(KERNEL_TITLES.get(kernel, kernel)), loc="left")
        b = _boundaries(ax, dev, declared=False, names=(i % cols == 0))
        if i == 0:
            proxies = b
        if i // cols == rows - 1:
            ax.set_xlabel("working-set size (bytes, log scale)")
        if i % cols == 0:
            unit = next(iter(per.values())).unit
            ax.set_ylabel(f"bandwidth ({unit}, STREAM bytes)")
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    # one y range for every panel, from every sample (the bands too): setting only the bottom on
    # the first panel would freeze the shared top at that panel's data and cut the others off
    top = max((v for per in curves.values() for c in per.values() for p in c.points for v in p.samples
               if finite(v)), default=1.0)
    axes[0][0].set_ylim(0, top * 1.06)
    fig.suptitle(label(title or f"{dev.kind.upper()} {dev.name}: bandwidth against working set"),
                 x=0.01, ha="left", fontsize=10.5)
    # one legend for every panel's series (streaming stores appear in some panels only)
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for h, t in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(t, h)
    first = set(axes[0][0].get_legend_handles_labels()[1])
    extra = [h for t, h in seen.items() if t not in first]
    rows_l = _legend(fig, axes[0][0], extra + proxies + [Patch(color="0.5", alpha=0.25,
                                                               label="min..max of repetitions")], ncols=4)
    _margins(fig, rows_l, top_in=0.62, hspace_in=0.62 if rows > 1 else 0.0)
    return fig


def bandwidth_overlay_figure(series: Sequence[tuple[str, DeviceResult]], kernel: str = "triad") -> Figure:
    fig = new_figure(9.6, 4.4)
    ax = fig.add_subplot()
    found = [(n, bandwidth_curves(d).get(kernel, {})) for n, d in series]
    xs = [p.x for _, per in found for c in per.values() for p in c.points]
    if not xs:
        raise NoData(f"no {kernel} bandwidth curves in either scan")
    _size_axis(ax, *_x_range(xs))
    for i, (name, per) in enumerate(found):
        for j, (tk, c) in enumerate(sorted(per.items())):
            _band_line(ax, c, level_colour(2 * i + j), LINESTYLES[i % 4],
                       label(f"{name}: {THREAD_LABELS.get(tk, tk)}"))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("working-set size (bytes, log scale)")
    ax.set_ylabel("bandwidth (GB/s, STREAM bytes)")
    ax.set_title(f"{kernel} bandwidth against working set", loc="left")
    _margins(fig, _legend(fig, ax, ncols=2))
    return fig


# ---- (e) roofline --------------------------------------------------------------------------
def compute_ceilings(dev: DeviceResult) -> list[tuple[str, float, str]]:
    """(label, GFLOP/s, kind) with kind in fma | gemm | theoretical."""
    comp = dev.compute
    if comp is None:
        return []
    out: list[tuple[str, float, str]] = []
    for dtype, per in comp.fma.items():
        for tk, v in per.items():
            if finite(v) and v > 0 and not comp.flagged(f"fma/{dtype}/{tk}"):
                out.append((f"FMA {dtype}, {THREAD_LABELS.get(tk, tk)}", float(v), "fma"))
    best: dict[tuple[str, str], float] = {}
    for g in comp.gemm:
        if finite(g.gflops) and g.gflops > 0:
            key = (g.library or "BLAS", g.dtype)
            best[key] = max(best.get(key, 0.0), float(g.gflops))
    for (lib, dtype), v in best.items():
        out.append((f"GEMM {dtype} ({lib}, best n)", v, "gemm"))
    if comp.theoretical is not None:
        for dtype, v in comp.theoretical.gflops.items():
            if finite(v) and v > 0:
                out.append((f"theoretical {dtype} (ISA × measured clock)", float(v), "theoretical"))
    return out


def level_bandwidth(lv: Level) -> tuple[float, str] | None:
    """The level's roof: the best kernel at all threads (else one thread), with what it was."""
    bw = lv.bandwidth_gbs or {}
    for tk in ("threads_all", "threads_1"):
        cands = [(float(per[tk]), k) for k, per in bw.items()
                 if isinstance(per, dict) and finite(per.get(tk)) and per[tk] > 0
                 and not lv.flagged(f"bandwidth/{k}/{tk}")]
        if cands:
            v, k = max(cands)
            return v, f"{k}, {THREAD_LABELS.get(tk, tk)}"
    return None


def training_points(result: ScanResult, device: str | None = None) -> list[TrainingPoint]:
    return result.training.device_points(device)


# what bounds a step, for the legend: "compute" is each op's own rate measured alone in cache
# (a GEMM of that shape), which can sit far below the compute roof drawn above it
BOUND_LEGEND = {"compute": "its ops' measured rates (not the peak)", "memory": "memory bandwidth",
                "overhead": "call overhead"}


def roofline_figure(dev: DeviceResult, points: Sequence[TrainingPoint] = (), title: str | None = None,
                    fig: FigureBase | None = None, point_name: str = "training step",
                    sized_name: str = "step sized for") -> FigureBase:
    ceilings = compute_ceilings(dev)
    roofs = [(lv, level_bandwidth(lv)) for lv in dev.levels]
    roofs = [(lv, r) for lv, r in roofs if r]
    if not ceilings and not roofs:
        raise NoData(f"no compute or bandwidth ceilings for {dev.kind}")
    pts = [p for p in points if finite(p.flops) and finite(p.bytes) and p.bytes > 0
           and finite(p.measured_s) and p.measured_s > 0 and p.flops > 0]
    ai = [p.flops / p.bytes for p in pts]
    x_lo = min([1 / 16] + [a / 2 for a in ai])
    x_hi = max([64.0] + [a * 2 for a in ai])
    # the roofs bend at the best *measured* ceiling; the theoretical one is drawn, not used
    measured = [v for _, v, k in ceilings if k != "theoretical"]
    peak = max(measured or [v for _, v, _ in ceilings] or [max(r[0] for _, r in roofs) * x_hi])
    fig = fig if fig is not None else new_figure(9.6, figure_height("roofline", dev, points))
    ax = fig.add_subplot()
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    xs = [x_lo * 2 ** (k / 8) for k in range(int(8 * math.log2(x_hi / x_lo)) + 1)]
    annotated: list[float] = []
    for i, (lv, (bw, how)) in enumerate(roofs):
        # the sloped part only, ending at the ridge where it meets the compute ceiling: the flat
        # parts of every roof would lie on one another (the ceiling lines below draw them)
        ridge = peak / bw
        sx = [x for x in xs if x < ridge] + [min(ridge, x_hi)]
        colour = level_colour(dev.levels.index(lv))
        ax.plot(sx, [bw * x for x in sx], color=colour, lw=1.8,
                label=label(f"{lv.name} roof: {fmt3(bw)} GB/s ({how})"))
        if ridge < x_hi:
            ax.plot([ridge], [peak], ls="", marker="|", ms=9, mew=1.6, color=colour)
        # roofs within a quarter of each other would print their names on one another
        near = sum(1 for b in annotated if abs(math.log(bw / b)) < math.log(1.25))
        annotated.append(bw)
        ax.annotate(label(lv.name), (sx[0], bw * sx[0]), textcoords="offset points", xytext=(2 + 22 * near, 3),
                    fontsize=7.5, color=colour)
    styles = {"fma": "-", "gemm": "--", "theoretical": ":"}
    greys = ("#000000", "#555555", "#888888", "#AAAAAA")
    for i, (name, v, kind) in enumerate(sorted(ceilings, key=lambda t: -t[1])):
        ax.axhline(v, color=greys[i % len(greys)], ls=styles[kind], lw=1.3,
                   label=label(f"{name}: {fmt3(v)} GFLOP/s"))
    level_index = {lv.name: i for i, lv in enumerate(dev.levels)}
    seen_bound: set[str] = set()
    # one scatter per marker shape (a collection each), not per point: far fewer artists to draw
    by_marker: dict[str, tuple[list[float], list[float], list[str], list[str]]] = {}
    for p, a in zip(pts, ai):
        colour = level_colour(level_index.get(p.level, len(OKABE_ITO) - 1))
        bound = p.bound or ""
        xs_, ys_, fc, ec = by_marker.setdefault(BOUND_MARKERS.get(bound, "D"), ([], [], [], []))
        xs_.append(a)
        ys_.append(p.flops / p.measured_s / 1e9)
        fc.append("none" if p.threads == "threads_1" else colour)
        ec.append(colour)
        seen_bound.add(bound)
    for marker, (xs_, ys_, fc, ec) in by_marker.items():
        ax.scatter(xs_, ys_, s=26, marker=marker, facecolors=fc, edgecolors=ec, linewidths=1.1, zorder=4)
    extra: list[Line2D] = []
    for b in sorted(seen_bound):
        extra.append(Line2D([], [], ls="", marker=BOUND_MARKERS.get(b, "D"), color="0.3",
                            label=f"{point_name}, bound by {BOUND_LEGEND.get(b, b or 'unknown')}"))
    # the points' colours: the level whose capacity the step's working set was sized against
    for name in dict.fromkeys(p.level for p in pts):
        idx = level_index.get(name)
        extra.append(Line2D([], [], ls="", marker="s", color=level_colour(idx if idx is not None else len(OKABE_ITO) - 1),
                            label=label(f"{sized_name} {name}" if idx is not None else f"{sized_name} {name} (no level)")))
    if any(p.threads == "threads_1" for p in pts):
        extra.append(Line2D([], [], ls="", marker="o", markerfacecolor="none", color="0.3",
                            label="hollow: 1 thread, filled: all threads"))
    ax.set_xlim(x_lo, x_hi)
    ys_all = [bw * x_lo for _, (bw, _) in roofs] + [v for _, v, _ in ceilings] + \
             [p.flops / p.measured_s / 1e9 for p in pts]
    ax.set_ylim(min(ys_all) / 2, max([peak] + [v for _, v, _ in ceilings]) * 2.5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt3(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved, log scale)")
    ax.set_ylabel("attainable rate (GFLOP/s, log scale)")
    ax.set_title(label(title or f"{dev.kind.upper()} {dev.name}: roofline, one bandwidth roof per level"),
                 loc="left")
    _margins(fig, _legend(fig, ax, extra, ncols=2))
    return fig


# ---- (f) loaded latency --------------------------------------------------------------------
def loaded_latency_figure(dev: DeviceResult) -> Figure:
    rows = [r for r in dev.loaded_latency if finite(r.bandwidth_gbs) and finite(r.latency_ns)]
    if not rows:
        raise NoData(f"no loaded-latency points for {dev.kind}")
    fig = new_figure(9.6, 4.0)
    ax = fig.add_subplot()
    kernels = sorted({r.kernel for r in rows})
    for i, k in enumerate(kernels):
        rs = sorted((r for r in rows if r.kernel == k), key=lambda r: r.bandwidth_gbs)
        ax.plot([r.bandwidth_gbs for r in rs], [r.latency_ns for r in rs], marker="os^D"[i % 4],
                ls=LINESTYLES[i % 4], color=level_colour(i), label=label(f"streaming kernel: {k or '?'}"))
        for r in rs:
            ax.annotate(f"{r.streaming_threads}", (r.bandwidth_gbs, r.latency_ns),
                        textcoords="offset points", xytext=(4, 4), fontsize=7.5, color=level_colour(i))
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("bandwidth drawn by the streaming threads (GB/s)")
    ax.set_ylabel("memory latency seen by the chasing thread (ns)")
    ax.set_title(label(f"{dev.kind.upper()} {dev.name}: loaded latency (labels: streaming threads)"),
                 loc="left")
    _margins(fig, _legend(fig, ax, ncols=3))
    return fig


# ---- training ------------------------------------------------------------------------------
def _seconds(v: float, _pos: Any = None) -> str:
    if v >= 1:
        return f"{v:g} s"
    if v >= 1e-3:
        return f"{v * 1e3:g} ms"
    return f"{v * 1e6:g} µs"


# the training families: one marker each, so they stay apart in greyscale and beside the batch colours
FAMILY_MARKERS = dict(zip((name for name, _l, _t in STUDY_MODEL_TEXT), ("o", "s", "^", "v", "P")))
FAMILY_NAMES = {name: label for name, label, _t in STUDY_MODEL_TEXT}



def training_figure(result: ScanResult) -> Figure:
    """Step time against the step's working set, one panel per device and thread count: colour
    is the batch, the marker the network family; solid filled = measured, dashed hollow =
    predicted; grey vertical lines are the measured cache capacities."""
    pts = [p for p in training_points(result) if finite(p.working_set_bytes)
           and finite(p.measured_s) and p.measured_s > 0 and p.working_set_bytes > 0]
    if not pts:
        raise NoData("no training points")
    groups = sorted({(p.device, p.threads) for p in pts})
    cols = min(2, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig = new_figure(9.6, 3.6 * rows + 1.7)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    batches = sorted({p.batch for p in pts})
    colours = {b: level_colour(i) for i, b in enumerate(batches)}
    families = [f for f in (*FAMILY_MARKERS, *sorted({p.model for p in pts})) if any(p.model == f for p in pts)]
    families = list(dict.fromkeys(families))
    markers = {f: FAMILY_MARKERS.get(f, "D") for f in families}
    edges = False
    for gi, (device, threads) in enumerate(groups):
        ax = axes[gi // cols][gi % cols]
        gp = [p for p in pts if (p.device, p.threads) == (device, threads)]
        _size_axis(ax, *_x_range([p.working_set_bytes for p in gp]))
        for fam in families:
            for b in batches:
                bp = sorted((p for p in gp if p.batch == b and p.model == fam), key=lambda p: p.working_set_bytes)
                if not bp:
                    continue
                ax.plot([p.working_set_bytes for p in bp], [p.measured_s for p in bp], color=colours[b],
                        marker=markers[fam], ms=4, lw=1.5, zorder=3)
                pred = [(p.working_set_bytes, p.predicted_s) for p in bp
                        if finite(p.predicted_s) and p.predicted_s > 0]
                if pred:
                    ax.plot(*zip(*pred), color=colours[b], ls="--", marker=markers[fam], ms=4, lw=1.0,
                            markerfacecolor="none", zorder=3)
        _plain_log_axis(ax, "y")
        ax.yaxis.set_major_formatter(FuncFormatter(_seconds))
        dev = result.devices.get(device)
        if dev is not None:
            edges = _capacity_lines(ax, dev, sizes=True) or edges
        ax.set_title(label(f"{device.upper()}, {THREAD_LABELS.get(threads, threads)}" if device == "cpu"
                           else device.upper()), loc="left")
        ax.set_xlabel("working set of one step (bytes, log scale)")
        if gi % cols == 0:
            ax.set_ylabel("time per training step (log scale)")
    for k in range(len(groups), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    # one legend for all panels, its three keys apart: colour = batch, marker = family, line = which
    handles = [Line2D([], [], color=colours[b], lw=2.0, label=f"batch {b}") for b in batches]
    handles += [Line2D([], [], ls="", marker=markers[f], color="0.3", ms=5,
                       label=label(FAMILY_NAMES.get(f, f))) for f in families]
    handles += [Line2D([], [], color="0.3", lw=1.5, marker="o", ms=4, label="measured"),
                Line2D([], [], color="0.3", lw=1.0, ls="--", marker="o", ms=4, markerfacecolor="none",
                       label="predicted from the scan")]
    if edges:
        handles.append(Line2D([], [], color=BOUNDARY_COLOUR, lw=1.1, label="measured cache capacity"))
    ncols = min(5, len(handles))
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center",
               bbox_to_anchor=(0.5, 0.04 / _inches(fig)[1]), ncols=ncols, frameon=False, borderaxespad=0.0)
    _margins(fig, math.ceil(len(handles) / ncols), top_in=0.62, hspace_in=1.05 if rows > 1 else 0.0)
    fig.suptitle("training step time against working set (solid: measured, dashed: predicted; "
                 "colour: batch, marker: network)", x=0.01, ha="left", fontsize=10.5)
    return fig


# ---- GPU: near/far L2, host link ---------------------------------------------------------------
def l2_hop_figure(dev: DeviceResult) -> Figure:
    """Per-hop L2 latency histograms, one per SM (near and far halves as two humps)."""
    curves = [c for c in dev.curves if c.kind == "histogram" and c.points]
    if not curves:
        raise NoData(f"no per-hop L2 histogram for {dev.kind}")
    fig = new_figure(9.6, 3.8)
    ax = fig.add_subplot()
    parts = {s.sm: s for s in dev.extra.l2_partitions.sms} if dev.extra.l2_partitions else {}
    for i, c in enumerate(curves):
        xs = [p.x for p in c.points]
        ys = [p.samples[0] if p.samples else 0.0 for p in c.points]
        sm = c.params.get("sm")
        ax.step(xs, ys, where="mid", color=level_colour(i), ls=LINESTYLES[i % 4], lw=1.4,
                label=label(f"SM {sm}"))
        thr = parts.get(sm).threshold_cycles if sm in parts else None
        if finite(thr):
            ax.axvline(thr, color=level_colour(i), lw=0.9, ls=":")
    ax.set_xlabel("cycles per hop (ld.global.cg, timer overhead included)")
    ax.set_ylabel("hops")
    ax.set_ylim(bottom=0)
    ax.set_title(label(f"{dev.kind.upper()} {dev.name}: L2 per-hop latency by SM (dotted: near/far split)"),
                 loc="left")
    _margins(fig, _legend(fig, ax, ncols=4))
    return fig


def transfer_figure(dev: DeviceResult) -> Figure:
    """Host<->device copy bandwidth against transfer size, per direction and host memory kind."""
    curves = [c for c in dev.curves if c.kind == "transfer" and c.points]
    if not curves:
        raise NoData(f"no host<->device transfer curve for {dev.kind}")
    fig = new_figure(9.6, 4.2)
    ax = fig.add_subplot()
    _size_axis(ax, *_x_range([p.x for c in curves for p in c.points]))
    for i, c in enumerate(curves):
        what = f"{c.params.get('direction', '?')}, {c.params.get('host', '?')} host memory"
        _band_line(ax, c, level_colour(i), LINESTYLES[i % 4], label(what))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("transfer size (bytes, log scale)")
    ax.set_ylabel("bandwidth (GB/s)")
    ax.set_title(label(f"{dev.kind.upper()} {dev.name}: host-device link"), loc="left")
    _margins(fig, _legend(fig, ax, [Patch(color="0.5", alpha=0.25, label="min..max of repetitions")], ncols=3))
    return fig


# ---- figure registry for plot.py -----------------------------------------------------------
def figure_height(what: str, dev: DeviceResult, points: Sequence[TrainingPoint] = ()) -> float:
    """Height in inches that fits the axes plus the legend rows under them."""
    if what == "latency":
        return 4.6
    if what == "bandwidth":
        return 2.7 * math.ceil(len(bandwidth_curves(dev)) / 2) + 1.3
    if what == "roofline":
        n = len(compute_ceilings(dev)) + sum(1 for lv in dev.levels if level_bandwidth(lv))
        n += len({p.bound for p in points}) + (1 if points else 0)
        return 4.3 + 0.2 * math.ceil(n / 2)
    return 4.4

def device_figure(result: ScanResult, what: str, device: str) -> Figure:
    dev = result.devices[device]
    if what == "latency":
        return latency_figure(dev)
    if what == "bandwidth":
        return bandwidth_figure(dev)
    if what == "roofline":
        return roofline_figure(dev, training_points(result, device))
    raise ValueError(f"unknown figure {what!r}")


# ---- fleet ---------------------------------------------------------------------------------------
def fleet_figure(df: Any, col: str, unit: str, outlier_rows: Sequence[int]) -> Figure:
    """One key figure across the fleet: nodes sorted by it, the median dashed, outliers marked."""
    d = df[["host", col]].dropna().sort_values(col)
    if d.empty:
        raise NoData(f"no values of {col}")
    fig = new_figure(9.6, 3.4)
    ax = fig.add_subplot()
    xs = list(range(len(d)))
    out = [i in set(outlier_rows) for i in d.index]
    ax.scatter([x for x, o in zip(xs, out) if not o], [v for v, o in zip(d[col], out) if not o],
               s=14, color=OKABE_ITO[0], label="node")
    ax.scatter([x for x, o in zip(xs, out) if o], [v for v, o in zip(d[col], out) if o],
               s=40, color=OKABE_ITO[3], marker="X", label="outlier")
    for x, o, h, v in zip(xs, out, d["host"], d[col]):
        if o:
            ax.annotate(label(h), (x, v), textcoords="offset points", xytext=(4, 4), fontsize=7.5)
    ax.axhline(float(d[col].median()), color="0.4", ls="--", lw=1, label="fleet median")
    ax.set_xlabel("nodes, sorted")
    ax.set_ylabel(label(f"{col} ({unit})"))
    ax.set_xticks([])
    ax.set_title(label(f"{col} across {len(d)} scans"), loc="left")
    _margins(fig, _legend(fig, ax, ncols=3))
    return fig
