"""Stage 5 of the flow (probe -> samples -> inference -> result -> **report**): the HTML report.

`render_html(result)` turns one `ScanResult` (read from scan.json, never from the running
machine) into one self-contained HTML page: CSS inline, figures inline as SVG, no script, and a
Content-Security-Policy that forbids the page from loading anything at all, so it opens offline
and can't leak a request. The page is a jinja2 template (templates/report.html, autoescaped,
strict undefined); this module only builds plain view dictionaries for it, so every number is
formatted in one place and the template holds layout alone.

Sections (ids are stable; tests and links rely on them): summary, declared-vs-measured, latency,
bandwidth, roofline, training (only when the study ran), loaded-latency, warnings, method, files.
"""

from __future__ import annotations

import functools
import math
import statistics
from typing import Any, Callable

import jinja2
from markupsafe import Markup

from memprobe.platform.load import STEAL_NOTABLE_FRACTION
from memprobe.report import figures as F
from memprobe.result import BANDWIDTH_KERNELS, THREAD_KEYS, DeviceResult, Level, ScanResult

# a measured capacity more than this far from the declared one is flagged in the table
DISAGREE_FRACTION = 0.25
# a level matched to a declared cache must be within this factor of it (else: no counterpart)
MATCH_FACTOR = 8.0
SECTIONS = ("summary", "declared-vs-measured", "latency", "bandwidth", "roofline", "training",
            "loaded-latency", "warnings", "method", "files")


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates live as files in the package (templates/*.html, *.css); compiled once."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("memprobe.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    env.filters["size"] = F.size_text
    env.filters["pct"] = pct
    env.tests["scalar"] = lambda v: v is None or isinstance(v, (str, int, float, bool))
    return env


# ---- formatting --------------------------------------------------------------------------
def num(v: Any, digits: int = 3) -> str:
    """3 significant digits, no exponent for everyday magnitudes; '—' for missing."""
    if v is None or isinstance(v, bool):
        return "—" if v is None else ("yes" if v else "no")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return F.fmt3(v)
    return str(v)


def pct(v: Any, signed: bool = True) -> str:
    if not F.finite(v):
        return "—"
    return f"{v * 100:+.0f} %" if signed else f"{v * 100:.0f} %"


def _svg(build: Callable[[], Any], salt: str) -> dict[str, Any]:
    """A figure as {svg, missing, error}: a figure that fails must not lose the whole report."""
    try:
        with F.style(salt):
            fig = build()
        return {"svg": Markup(F.to_svg(fig, salt)), "missing": None, "error": None}
    except F.NoData as exc:
        return {"svg": None, "missing": str(exc), "error": None}
    except Exception as exc:  # noqa: BLE001 - keep rendering; the section says what failed
        return {"svg": None, "missing": None, "error": f"{exc.__class__.__name__}: {exc}"}


# ---- levels: diagram, declared vs measured -----------------------------------------------
def _bw_cells(lv: Level) -> list[dict[str, Any]]:
    out = []
    bw = lv.bandwidth_gbs or {}
    kernels = [k for k in BANDWIDTH_KERNELS if k in bw] + sorted(k for k in bw if k not in BANDWIDTH_KERNELS)
    for k in kernels:
        per = bw.get(k) or {}
        out.append({"kernel": k, "t1": per.get("threads_1"), "tall": per.get("threads_all")})
    return out


def _level_view(lv: Level, i: int, widths: dict[str, float]) -> dict[str, Any]:
    read = (lv.bandwidth_gbs or {}).get("read") or {}
    roof = F.level_bandwidth(lv)
    return {
        "name": lv.name,
        "is_memory": lv.size_bytes is None,
        "size": F.size_text(lv.size_bytes) if lv.size_bytes else "main memory",
        "size_range": " – ".join(F.size_text(s) for s in lv.size_range_bytes) if lv.size_range_bytes else "",
        "latency_ns": num(lv.latency_ns),
        "latency_cycles": num(lv.latency_cycles),
        "spread": pct(lv.latency_spread, signed=False),
        "unstable": bool(lv.unstable),
        "sharing": lv.sharing or "",
        "notes": list(lv.notes or []),
        "read_t1": num(read.get("threads_1")) if read else None,
        "read_tall": num(read.get("threads_all")) if read else None,
        "roof": f"{num(roof[0])} GB/s ({roof[1]})" if roof else None,
        "bw": {c["kernel"]: c for c in _bw_cells(lv)},
        "colour": F.level_colour(i),
        "width": widths.get(lv.name, 100.0),
    }


def _diagram_widths(levels: list[Level]) -> dict[str, float]:
    """Box widths grow with log2(capacity), so the diagram reads as the hierarchy's shape."""
    sizes = [lv.size_bytes for lv in levels if lv.size_bytes]
    if not sizes:
        return {}
    lo, hi = math.log2(min(sizes)), math.log2(max(sizes))
    span = max(hi - lo, 1.0)
    return {lv.name: (38.0 + 50.0 * (math.log2(lv.size_bytes) - lo) / span) if lv.size_bytes else 100.0
            for lv in levels}


def _declared_caches(dev: DeviceResult) -> list[dict[str, Any]]:
    out = []
    d = dev.declared or {}
    caches = d.get("data_caches")
    if caches is None:
        caches = [c for c in d.get("caches") or [] if str(c.get("type", "")).lower() != "instruction"]
    for c in caches or []:
        if isinstance(c, dict) and F.finite(c.get("size_bytes")):
            n = c.get("shared_by_cpus")
            sharing = ""
            if F.finite(n):
                sharing = "private (1 CPU)" if n == 1 else f"shared by {n} CPUs ({c.get('shared_cpu_list', '?')})"
            suffix = "d" if str(c.get("type", "")).lower() == "data" else ""
            out.append({"name": f"L{c.get('level', '?')}{suffix}", "size_bytes": int(c["size_bytes"]),
                        "line": c.get("line_size_bytes"), "ways": c.get("ways"), "sharing": sharing})
    if not out:
        for name, size in F.declared_sizes(dev):
            out.append({"name": name, "size_bytes": size, "line": None, "ways": None,
                        "sharing": "shared by all SMs" if name == "L2" and dev.kind == "gpu" else ""})
    return sorted(out, key=lambda c: c["size_bytes"])


def match_levels(dev: DeviceResult) -> list[dict[str, Any]]:
    """Pair each inferred cache level with the declared cache nearest in log2(size), one to one.

    Matching by size rather than by name, because inference names levels in the order it finds
    them: a missed L1 would otherwise compare the measured 'L1' with the declared L1 and call
    every level wrong. Pairs further apart than MATCH_FACTOR stay unmatched and are shown so.
    """
    measured = [lv for lv in dev.levels if lv.size_bytes]
    declared = _declared_caches(dev)
    cands = []
    for i, lv in enumerate(measured):
        for j, dc in enumerate(declared):
            dist = abs(math.log2(lv.size_bytes) - math.log2(dc["size_bytes"]))
            if dist <= math.log2(MATCH_FACTOR):
                cands.append((dist, i, j))
    pair_m: dict[int, int] = {}
    used_d: set[int] = set()
    for _dist, i, j in sorted(cands):
        if i not in pair_m and j not in used_d:
            pair_m[i] = j
            used_d.add(j)
    rows = []
    for i, lv in enumerate(measured):
        dc = declared[pair_m[i]] if i in pair_m else None
        diff = (lv.size_bytes - dc["size_bytes"]) / dc["size_bytes"] if dc else None
        note = []
        if dc is None:
            note.append("no declared cache near this size: a noise step, or a level not declared")
        elif dc["name"].rstrip("d") != lv.name:
            note.append(f"inferred as {lv.name}, declared as {dc['name']}")
        if dc is not None and diff is not None and diff < -DISAGREE_FRACTION:
            note.append("below declared: the slice this process can use (VM, shared cache) or a noisy boundary")
        elif dc is not None and diff is not None and diff > DISAGREE_FRACTION:
            note.append("above declared: the next level's latency is close, or a noisy boundary")
        # the scan's notes on memory and a cache close to it (scan/cpu.py stage_memory_side); the
        # other level notes (unstable, sharing, GPU bandwidth) have their own columns or sections
        note.extend(n for n in (lv.notes or []) if "memory-side cache" in n or "page-local chase" in n
                    or "is not a cache" in n)
        rows.append({
            "sort": lv.size_bytes,
            "measured": lv.name, "measured_size": F.size_text(lv.size_bytes),
            "size_range": " – ".join(F.size_text(s) for s in lv.size_range_bytes) if lv.size_range_bytes else "",
            "declared": dc["name"] if dc else "—", "declared_size": F.size_text(dc["size_bytes"]) if dc else "—",
            "diff": pct(diff) if diff is not None else "—",
            "flag": bool(diff is not None and abs(diff) > DISAGREE_FRACTION),
            "latency_ns": num(lv.latency_ns), "latency_cycles": num(lv.latency_cycles),
            "sharing_measured": lv.sharing or "not measured",
            "sharing_declared": dc["sharing"] if dc and dc["sharing"] else "—",
            "unstable": lv.unstable, "note": "; ".join(note),
        })
    for j, dc in enumerate(declared):
        if j not in used_d:
            rows.append({
                "sort": dc["size_bytes"], "measured": "—", "measured_size": "—", "size_range": "",
                "declared": dc["name"], "declared_size": F.size_text(dc["size_bytes"]), "diff": "—",
                "flag": True, "latency_ns": "—", "latency_cycles": "—", "sharing_measured": "—",
                "sharing_declared": dc["sharing"] or "—", "unstable": False,
                "note": "declared, but the sweep resolved no boundary near it",
            })
    rows.sort(key=lambda r: r["sort"])
    mem = next((lv for lv in dev.levels if not lv.size_bytes), None)
    if mem is not None:
        rows.append({"sort": math.inf, "measured": mem.name, "measured_size": "—", "size_range": "",
                     "declared": "memory", "declared_size": F.size_text((dev.declared.get("memory") or {}).get("total_bytes"))
                     if isinstance(dev.declared.get("memory"), dict) else "—",
                     "diff": "—", "flag": False, "latency_ns": num(mem.latency_ns),
                     "latency_cycles": num(mem.latency_cycles), "sharing_measured": mem.sharing or "—",
                     "sharing_declared": "—", "unstable": mem.unstable, "note": ""})
    return rows


def _line_row(dev: DeviceResult) -> dict[str, Any] | None:
    caches = _declared_caches(dev)
    declared = next((c["line"] for c in caches if c["line"]), None)
    if dev.line_size_bytes is None and declared is None:
        return None
    diff = ((dev.line_size_bytes - declared) / declared) if dev.line_size_bytes and declared else None
    return {"measured": F.size_text(dev.line_size_bytes), "declared": F.size_text(declared),
            "diff": pct(diff) if diff is not None else "—",
            "flag": bool(diff is not None and abs(diff) > DISAGREE_FRACTION)}


# ---- noise --------------------------------------------------------------------------------
def _noise_rows(dev: DeviceResult) -> list[dict[str, Any]]:
    rows = []
    for c in dev.curves:
        pts = [p for p in c.points if len(p.samples) > 1 and F.finite(p.spread)]
        if not pts:
            continue
        spreads = [p.spread for p in pts]
        worst = max(pts, key=lambda p: p.spread)
        where = F.size_text(worst.x) if c.x_name == "size_bytes" else num(worst.x)
        rows.append({"curve": c.name, "kind": c.kind, "points": len(c.points),
                     "reps": max(len(p.samples) for p in c.points),
                     "median_spread": pct(statistics.median(spreads), signed=False),
                     "max_spread": pct(worst.spread, signed=False), "where": where,
                     "noisy": statistics.median(spreads) > 0.25})
    return rows


def _stage_rows(dev: DeviceResult) -> list[dict[str, Any]]:
    """Each stage's seconds beside the host's steal time during it (the conditions it ran in)."""
    seconds = (dev.extra or {}).get("stage_seconds") or {}
    steal = (dev.extra or {}).get("stage_steal_percent") or {}
    return [{"stage": name, "seconds": num(s), "steal": "—" if steal.get(name) is None else f"{steal[name]:g} %",
             "stolen": (steal.get(name) or 0) >= 100 * STEAL_NOTABLE_FRACTION}
            for name, s in seconds.items()]


# ---- compute, loaded latency, training ------------------------------------------------------
def _compute_view(dev: DeviceResult) -> dict[str, Any] | None:
    comp = dev.compute or {}
    if not comp:
        return None
    fma = []
    for dtype, per in (comp.get("fma") or {}).items():
        if isinstance(per, dict):
            fma.append({"dtype": dtype, "t1": num(per.get("threads_1")), "tall": num(per.get("threads_all"))})
    gemm = [{"library": g.get("library", "—"), "dtype": g.get("dtype", "—"), "n": num(g.get("n")),
             "threads": num(g.get("threads")), "gflops": num(g.get("gflops"))}
            for g in comp.get("gemm") or [] if isinstance(g, dict)]
    theo = comp.get("theoretical") if isinstance(comp.get("theoretical"), dict) else {}
    other = {k: v for k, v in comp.items() if k not in ("fma", "gemm", "theoretical")}
    return {"fma": fma, "gemm": gemm, "theoretical": theo, "other": other}


def _training_view(result: ScanResult) -> dict[str, Any] | None:
    tr = result.training or {}
    pts = F.training_points(result)
    if not pts:
        return None
    rows = []
    for p in sorted(pts, key=lambda p: (str(p.get("device")), str(p.get("threads")), _n(p.get("batch")),
                                        _n(p.get("working_set_bytes")))):
        rows.append({
            "device": p.get("device", "—"), "level": p.get("level", "—"), "width": num(p.get("width")),
            "batch": num(p.get("batch")), "threads": F.THREAD_LABELS.get(p.get("threads"), p.get("threads") or "—"),
            "ws": F.size_text(p.get("working_set_bytes")), "gflop": num(_div(p.get("flops"), 1e9)),
            "mb": num(_div(p.get("bytes"), 1e6)), "measured": _time(p.get("measured_s")),
            "predicted": _time(p.get("predicted_s")), "error": pct(p.get("error")),
            "big_error": F.finite(p.get("error")) and abs(p["error"]) > 0.15,
            "achieved": pct(p.get("achieved_fraction"), signed=False), "bound": p.get("bound", "—"),
        })
    summary = []
    groups = sorted({(str(p.get("device")), str(p.get("threads"))) for p in pts})
    for dev, th in groups:
        gp = [p for p in pts if (str(p.get("device")), str(p.get("threads"))) == (dev, th) and F.finite(p.get("error"))]
        big = [abs(p["error"]) for p in gp if F.finite(p.get("batch")) and p["batch"] >= 16]
        one = [abs(p["error"]) for p in gp if p.get("batch") == 1]
        summary.append({"device": dev, "threads": F.THREAD_LABELS.get(th, th), "n": len(gp),
                        "big": pct(statistics.median(big), signed=False) if big else "—",
                        "one": pct(statistics.median(one), signed=False) if one else "—"})
    extra = {k: v for k, v in tr.items() if k != "points"}
    return {"rows": rows, "summary": summary, "extra": extra}


def _n(v: Any) -> float:
    return float(v) if F.finite(v) else math.inf


def _div(a: Any, b: float) -> float | None:
    return a / b if F.finite(a) else None


def _time(s: Any) -> str:
    return F._seconds(s) if F.finite(s) and s > 0 else "—"


def _loaded_rows(dev: DeviceResult) -> list[dict[str, Any]]:
    return [{"threads": num(r.get("streaming_threads")), "kernel": r.get("kernel", "—"),
             "bw": num(r.get("bandwidth_gbs")), "lat": num(r.get("latency_ns"))}
            for r in dev.loaded_latency or [] if isinstance(r, dict)]


# ---- method text -----------------------------------------------------------------------------
def _method(result: ScanResult) -> list[dict[str, str]]:
    params: dict[str, str] = {}
    for dev in result.devices.values():
        for c in dev.curves:
            if c.params.get("method"):
                params.setdefault(c.kind, str(c.params["method"]))
    out = [
        {"figure": "Latency against working set",
         "text": "One thread follows a single random cycle (Sattolo's algorithm) through cache-line-spaced "
                 "slots of a buffer of each size, so every load depends on the previous one and no prefetcher "
                 "can guess the next address; the time per hop is the load latency. The buffer uses 2 MiB "
                 "huge pages for the cache curve and 4 KiB pages beside it (the gap is the TLB's reach); each "
                 "size is repeated, the line is the median and the band the min..max of the repetitions. "
                 "On the CPU the cache range is swept again in later passes with fresh buffers, and the "
                 "levels are read from each size's lower quartile: a neighbour busy during one pass, or "
                 "one buffer's lucky page placement, moves neither."},
        {"figure": "Levels (boundaries, declared vs measured)",
         "text": "Levels are plateaus of latency against log(size), and a boundary is where the curve leaves a "
                 "plateau; capacity, latency and spread come from this curve alone. Declared sizes (sysfs, CUDA "
                 "attributes) are drawn beside them and never feed the inference."},
        {"figure": "Bandwidth against working set",
         "text": "Read, write, copy and triad loops run over a working set of each size, with one thread and "
                 "with all threads, and bytes are counted as STREAM counts them (bytes read + bytes written). "
                 "Per level, one working set centred inside the level gives the bandwidth in the table."},
        {"figure": "Roofline",
         "text": "Compute ceilings are measured: an FMA-throughput kernel with independent accumulator chains "
                 "and a BLAS matrix product; the theoretical peak (ISA FMA width × measured clock × cores) is "
                 "drawn dotted for reference. Each level's roof is its best measured bandwidth times the "
                 "arithmetic intensity, bent at the best measured compute ceiling."},
        {"figure": "Loaded latency",
         "text": "One thread chases pointers through a buffer far larger than the last cache while the other "
                 "threads stream through buffers of their own. Each point is the latency it saw against the "
                 "bandwidth the streaming threads drew, so the curve shows how latency grows with demand."},
        {"figure": "Training study",
         "text": "A reference MLP (square dense layers, ReLU, SGD) runs training steps at widths chosen so the "
                 "step's working set lands below and above each measured capacity, at several batch sizes; "
                 "each point is the median of many steps after warm-up. The prediction sums, per op, the "
                 "larger of FLOPs/measured compute rate and bytes/measured bandwidth of the level holding it, "
                 "plus a measured per-op overhead: nothing is fitted to the step times."},
        {"figure": "Line size and clock",
         "text": "The line size comes from the stride where misses per access stop growing and from a "
                 "false-sharing probe (two threads adding to counters a stride apart), not from sysfs. The "
                 "clock is measured by timing a chain of dependent adds, so cycles are cycles of this run."},
    ]
    if "gpu" in result.devices:
        out.append({"figure": "GPU",
                    "text": "Latency is a one-thread pointer chase timed with the SM clock (%clock64), through L1 "
                            "by default and with L1 bypassed (ld.global.cg) so L1 and L2 separate; bandwidth is a "
                            "many-thread streaming kernel at full occupancy. Sizes from CUDA attributes are "
                            "declared and shown beside the measured ones."})
    for row in out:
        kind = {"Latency against working set": "latency", "Bandwidth against working set": "bandwidth"}.get(row["figure"])
        if kind and kind in params:
            row["text"] += f" (This scan's probe: {params[kind]}.)"
    return out


# ---- the page --------------------------------------------------------------------------------
def _device_view(result: ScanResult, key: str, dev: DeviceResult) -> dict[str, Any]:
    widths = _diagram_widths(dev.levels)
    salt = f"{key}-"
    has_bw = bool(F.bandwidth_curves(dev))
    return {
        "key": key, "kind": dev.kind, "name": dev.name,
        "clock": num(dev.clock_ghz), "line": F.size_text(dev.line_size_bytes),
        "cores": dev.declared.get("cores_usable", dev.declared.get("sm_count")),
        "cores_label": "SMs" if dev.kind == "gpu" else "usable CPUs",
        "levels": [_level_view(lv, i, widths) for i, lv in enumerate(dev.levels)],
        "has_level_bw": any(lv.bandwidth_gbs for lv in dev.levels),
        "bw_kernels": list(dict.fromkeys(c["kernel"] for lv in dev.levels for c in _bw_cells(lv))),
        "match": match_levels(dev),
        "line_row": _line_row(dev),
        "latency": _svg(lambda: F.latency_figure(dev), salt + "lat"),
        "bandwidth": _svg(lambda: F.bandwidth_figure(dev), salt + "bw") if has_bw else
        {"svg": None, "missing": "no bandwidth curve", "error": None},
        "roofline": _svg(lambda: F.roofline_figure(dev, F.training_points(result, key)), salt + "roof"),
        "loaded": _svg(lambda: F.loaded_latency_figure(dev), salt + "ll") if dev.loaded_latency else
        {"svg": None, "missing": "no loaded-latency points", "error": None},
        "loaded_rows": _loaded_rows(dev),
        "compute": _compute_view(dev),
        "noise": _noise_rows(dev),
        "stages": _stage_rows(dev),
        "unstable": [lv for lv in dev.levels if lv.unstable],
        "warnings": list(dev.warnings or []),
        "declared": {k: v for k, v in (dev.declared or {}).items() if k not in ("caches", "data_caches", "flags")},
        "flags": len(dev.declared.get("flags") or []),
        "extra": dict(dev.extra or {}),
        "thread_keys": THREAD_KEYS,
    }


def build_context(result: ScanResult, json_name: str = "scan.json", csv_name: str = "curves.csv") -> dict[str, Any]:
    devices = [_device_view(result, k, d) for k, d in result.devices.items()]
    training = _training_view(result)
    return {
        "title": f"memprobe: {result.host}, {result.started_at}",
        "steal_notable_percent": f"{100 * STEAL_NOTABLE_FRACTION:g}",
        "host": result.host,
        "started_at": result.started_at,
        "duration": num(result.duration_s),
        "complete": result.complete,
        "schema": result.schema,
        "settings": result.settings,
        "fixture": result.settings.get("fixture"),
        "scan_warnings": list(result.warnings or []),
        "devices": devices,
        "training": training,
        "training_fig": _svg(lambda: F.training_figure(result), "train") if training else None,
        "method": _method(result),
        "json_name": json_name,
        "csv_name": csv_name,
        "any_bw": any(d["bandwidth"]["svg"] or d["has_level_bw"] for d in devices),
        "any_roof": any(d["roofline"]["svg"] for d in devices),
        "any_loaded": any(d["loaded_rows"] for d in devices),
    }


def render_html(result: ScanResult, json_name: str = "scan.json", csv_name: str = "curves.csv") -> str:
    """The report of one scan as one self-contained HTML page (the caller writes it)."""
    return environment().get_template("report.html").render(**build_context(result, json_name, csv_name))
