"""Stage 5 of the flow (probe -> samples -> inference -> result -> **report**): the HTML report.

`render_html(result)` turns one `ScanResult` (read from scan.json, never from the running
machine) into one self-contained HTML page: CSS inline, figures inline as SVG, no script, and a
Content-Security-Policy that forbids the page from loading anything at all, so it opens offline
and can't leak a request. The page is a jinja2 template (templates/report.html, autoescaped,
strict undefined); this module only builds plain view dictionaries for it, so every number is
formatted in one place and the template holds layout alone.

Sections (ids are stable; tests and links rely on them): SECTIONS, of which gpu and cpu-vs-gpu
appear when a GPU was scanned and training when the study ran.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import statistics
from typing import Any, Callable

import jinja2
from markupsafe import Markup

from memprobe.report import figures as F
from memprobe.report.pairing import DISAGREE_FRACTION, pair_with_declared
from memprobe.report.text import STUDY_MODEL_ORDER, STUDY_MODEL_TEXT
from memprobe.result import (ALL_BANDWIDTH_KERNELS, THREAD_KEYS, Code, DeviceResult, Level, ScanResult, SeedRow,
                             TrainingPoint)

# the level notes the declared-vs-measured table repeats (the others have columns of their own)
MATCH_NOTE_CODES = (Code.NEAR_MEMORY, Code.MEMORY_SIDE_CACHE, Code.NOT_A_CACHE, Code.PAGE_LOCAL_MEMORY)
SECTIONS = ("summary", "declared-vs-measured", "latency", "bandwidth", "roofline", "gpu", "cpu-vs-gpu",
            "training", "loaded-latency", "warnings", "method", "files")
# sections only some scans have: gpu and cpu-vs-gpu (a GPU scanned), training (the study ran)
OPTIONAL_SECTIONS = ("gpu", "cpu-vs-gpu", "training")


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
    r = round(v * 100)
    return (f"{r:+.0f} %" if r else "0 %") if signed else f"{r:.0f} %"


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
    kernels = [k for k in ALL_BANDWIDTH_KERNELS if k in bw] + sorted(k for k in bw if k not in ALL_BANDWIDTH_KERNELS)
    for k in kernels:
        per = bw.get(k) or {}
        f1, fall = lv.flagged(f"bandwidth/{k}/threads_1"), lv.flagged(f"bandwidth/{k}/threads_all")
        out.append({"kernel": k, "t1": per.get("threads_1"), "tall": per.get("threads_all"),
                    "flag1": f1.reason if f1 else "", "flagall": fall.reason if fall else ""})
    return out


def _level_view(lv: Level, i: int, widths: dict[str, float]) -> dict[str, Any]:
    read = (lv.bandwidth_gbs or {}).get("read") or {}
    roof = F.level_bandwidth(lv)
    return {
        "name": lv.name,
        "is_memory": lv.size_bytes is None,
        "size": F.size_text(lv.size_bytes) if lv.size_bytes else "main memory",
        "size_range": " – ".join(F.size_text(s) for s in lv.size_interval_bytes) if lv.size_interval_bytes else "",
        "edge": lv.edge or "",
        "latency_ns": num(lv.latency_ns),
        "latency_cycles": num(lv.latency_cycles),
        "spread": pct(lv.latency_spread, signed=False),
        "unstable": bool(lv.unstable),
        "sharing": lv.sharing or "",
        "notes": [n.text for n in lv.notes],
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


def _declared_sharing(dc) -> str:
    if dc.scope:
        return dc.scope
    n = dc.shared_by_cpus
    if F.finite(n):
        return "private (1 CPU)" if n == 1 else f"shared by {n} CPUs ({dc.shared_cpu_list or '?'})"
    return ""


def _sharing_text(dev: DeviceResult, lv) -> str:
    """The verdict with its evidence: the capacity alone and under the other cores' load."""
    e = dev.extra.sharing.get(lv.name) if dev.extra else None
    text = lv.sharing or "not measured"
    if e is not None and e.capacity_alone_bytes:
        loaded = F.size_text(e.capacity_loaded_bytes) if e.capacity_loaded_bytes else "no edge"
        text += (f" (capacity {F.size_text(e.capacity_alone_bytes)} alone, {loaded} under load"
                 + (f"; shared would leave {F.size_text(e.shared_share_bytes)}" if e.shared_share_bytes else "") + ")")
    return text


def match_levels(dev: DeviceResult) -> list[dict[str, Any]]:
    """The declared-vs-measured rows, from the one pairing every view uses (report/pairing.py)."""
    rows = []
    for pr in pair_with_declared(dev):
        lv, dc = pr.measured, pr.other
        diff = pr.size_diff
        note = []
        if pr.is_memory:
            rows.append({"measured": lv.name if lv else "—", "measured_size": "—", "size_range": "", "edge": "",
                         "declared": "memory", "declared_size": F.size_text(dev.declared.memory_total_bytes),
                         "diff": "—", "flag": False, "latency_ns": num(lv.latency_ns if lv else None),
                         "latency_cycles": num(lv.latency_cycles if lv else None),
                         "sharing_measured": (lv.sharing if lv else None) or "—", "sharing_declared": "—",
                         "unstable": bool(lv and lv.unstable),
                         "note": "; ".join(n.text for n in (lv.notes if lv else []) if n.code in MATCH_NOTE_CODES)})
            continue
        if lv is None:
            rows.append({"measured": "—", "measured_size": "—", "size_range": "", "edge": "",
                         "declared": dc.label, "declared_size": F.size_text(dc.size_bytes), "diff": "—",
                         "flag": True, "latency_ns": "—", "latency_cycles": "—", "sharing_measured": "—",
                         "sharing_declared": _declared_sharing(dc) or "—", "unstable": False,
                         "note": "declared, but the sweep resolved no boundary near it"})
            continue
        if dc is None:
            note.append("no declared cache near this size: a noise step, or a level not declared")
        elif dc.label.rstrip("d") != lv.name:
            note.append(f"inferred as {lv.name}, declared as {dc.label}")
        if diff is not None and diff < -DISAGREE_FRACTION:
            note.append("below declared: the slice this process can use (VM, shared cache) or a noisy boundary")
        elif diff is not None and diff > DISAGREE_FRACTION:
            note.append("above declared: the next level's latency is close, or a noisy boundary")
        note.extend(n.text for n in lv.notes if n.code in MATCH_NOTE_CODES)
        rows.append({
            "measured": lv.name, "measured_size": F.size_text(lv.size_bytes),
            "size_range": " – ".join(F.size_text(s) for s in lv.size_interval_bytes) if lv.size_interval_bytes else "",
            "edge": lv.edge or "",
            "declared": dc.label if dc else "—", "declared_size": F.size_text(dc.size_bytes) if dc else "—",
            "diff": pct(diff) if diff is not None else "—", "flag": pr.flagged,
            "latency_ns": num(lv.latency_ns), "latency_cycles": num(lv.latency_cycles),
            "sharing_measured": _sharing_text(dev, lv),
            "sharing_declared": (_declared_sharing(dc) if dc else "") or "—",
            "unstable": lv.unstable, "note": "; ".join(note),
        })
    return rows


def _line_row(dev: DeviceResult) -> dict[str, Any] | None:
    declared = next((c.line_size_bytes for c in dev.declared.data_caches() if c.line_size_bytes), None)
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
    ex = dev.extra
    seconds, steal, others = ex.stage_seconds, ex.stage_steal_percent, ex.stage_others_percent
    notable, busy = ex.steal_notable_percent, ex.others_notable_percent

    def pct_or_dash(d: dict[str, float], name: str) -> str:
        return "—" if d.get(name) is None else f"{d[name]:g} %"

    return [{"stage": name, "seconds": num(s), "steal": pct_or_dash(steal, name),
             "others": pct_or_dash(others, name), "load": num(ex.stage_load_average.get(name)),
             "stolen": (notable is not None and (steal.get(name) or 0) >= notable)
             or (busy is not None and (others.get(name) or 0) >= busy)}
            for name, s in seconds.items()]


# ---- compute, loaded latency, training ------------------------------------------------------
def _compute_view(dev: DeviceResult) -> dict[str, Any] | None:
    comp = dev.compute
    if comp is None:
        return None
    fma = [{"dtype": dtype, "t1": num(per.get("threads_1")), "tall": num(per.get("threads_all"))}
           for dtype, per in comp.fma.items()]
    gemm = [{"library": g.library, "dtype": g.dtype, "n": num(g.n), "threads": g.threads, "gflops": num(g.gflops)}
            for g in comp.gemm]
    theo = []
    if comp.theoretical is not None:
        t = comp.theoretical
        for dtype, v in t.gflops.items():
            theo.append({"dtype": dtype, "gflops": num(v), "per_cycle": num(t.flops_per_cycle_per_unit.get(dtype)),
                         "units": t.units, "clock": num(t.clock_ghz)})
    return {"fma": fma, "gemm": gemm, "theoretical": theo, "statistic": comp.statistic, "method": comp.method,
            "unit_label": "SMs" if dev.kind == "gpu" else "cores",
            "fma_clock": num(comp.clock_ghz_during_fma) if comp.clock_ghz_during_fma else None}


FAMILY_TITLES = {name: title for name, _label, title in STUDY_MODEL_TEXT}
FAMILY_ORDER = STUDY_MODEL_ORDER
SEED_TASKS = {"mnist_epoch": "MNIST, one epoch", "resnet50_epoch": "ResNet-50, one ImageNet epoch",
              "gpt2_finetune": "GPT-2 small, fine-tune"}
MISS = 0.25  # the report flags a prediction off by more than this (train/model.MISS_FRACTION)
TOP_OPS = 8  # the per-op tables show the slowest ops, the rest summed in one row


def duration(s: Any) -> str:
    """A time in the unit a reader would say it in, 3 significant digits: 12.8 µs, 633 ms,
    4.2 s, 7.5 min, 3.1 h, 2.4 days; '—' for missing."""
    if not F.finite(s) or s <= 0:
        return "—"
    for unit, div, top in (("µs", 1e-6, 1e-3), ("ms", 1e-3, 1.0), ("s", 1.0, 120.0), ("min", 60.0, 7200.0),
                           ("h", 3600.0, 172800.0), ("days", 86400.0, math.inf)):
        if s < top:
            return f"{fmt_sig(s / div)} {unit}"
    return "—"  # unreachable


def fmt_sig(v: float) -> str:
    """3 significant digits, plain: 12.8, 633, 4.20 -> 4.2, 1 234 -> 1234."""
    if v >= 1000:
        return f"{v:.0f}"
    return f"{float(f'{v:.3g}'):g}"


def bound_words(bound: str | None) -> str:
    """What bounds a step or an op, in words: its ops' own measured rate ("compute": each op
    timed alone with its data in cache, which for a small GEMM is far below the machine's
    peak), a level's bandwidth, or call overhead."""
    if not bound:
        return "—"
    return {"compute": "op rate", "overhead": "call overhead", "memory": "memory bandwidth"}.get(
        bound, f"{bound} bandwidth")


def _family_name(model: str) -> str:
    return F.FAMILY_NAMES.get(model, model)


def _shape(p: TrainingPoint) -> str:
    """The network's size at one point, in words (the spec's own keys where the family has one)."""
    sp = p.spec or {}
    if p.model == "cnn":
        res = sp.get("resolution")
        return (f"{sp.get('channels', p.width)} channels" + (f", {res}×{res} px" if res else "")
                + f", {sp.get('blocks', p.layers)} blocks")
    if p.model == "transformer":
        seq = sp.get("seq")
        return (f"width {sp.get('width', p.width)}" + (f", {seq} tokens" if seq else "")
                + f", {sp.get('layers', p.layers)} layers")
    return f"width {p.width}, {p.layers} layers"


def _level_words(level: str) -> str:
    return "below L1 (overhead)" if level == "overhead" else level


def _point_row(p: TrainingPoint) -> dict[str, Any]:
    miss = F.finite(p.error) and abs(p.error) > MISS
    cause = p.miss_cause or ("not recorded by this scan" if miss else "")
    return {"level": _level_words(p.level), "shape": _shape(p), "ws": F.size_text(p.working_set_bytes),
            "batch": num(p.batch), "threads": F.THREAD_LABELS.get(p.threads, p.threads),
            "measured": duration(p.measured_s), "predicted": duration(p.predicted_s), "error": pct(p.error),
            "miss": miss, "cause": cause, "bound": bound_words(p.bound)}


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _family_tables(pts: list[TrainingPoint]) -> list[dict[str, Any]]:
    """One table per family and device: batch > 1 first, batch 1 apart (its error is overhead)."""
    out = []
    devices = sorted({p.device for p in pts})
    fams = [f for f in FAMILY_ORDER if any(p.model == f for p in pts)]
    fams += sorted({p.model for p in pts} - set(fams))
    for fam in fams:
        for dev in devices:
            fp = [p for p in pts if p.model == fam and p.device == dev]
            if not fp:
                continue
            fp.sort(key=lambda p: (p.threads, p.batch, p.working_set_bytes))
            big = [p for p in fp if p.batch > 1]
            one = [p for p in fp if p.batch == 1]
            err_big = [p.error for p in big if F.finite(p.error) and p.batch >= 16]
            err_one = [p.error for p in one if F.finite(p.error)]
            title = FAMILY_TITLES.get(fam, fam)
            out.append({
                "family": fam, "device": dev,
                "title": title + (f", {dev.upper()}" if len(devices) > 1 else ""),
                "rows": [_point_row(p) for p in big], "batch1": [_point_row(p) for p in one],
                "n": len(fp), "misses": sum(1 for p in fp if F.finite(p.error) and abs(p.error) > MISS),
                "abs_big": pct(_median([abs(e) for e in err_big]), signed=False) if err_big else None,
                "signed_big": pct(_median(err_big)) if err_big else None, "n_big": len(err_big),
                "abs_one": pct(_median([abs(e) for e in err_one]), signed=False) if err_one else None,
                "n_one": len(err_one),
            })
    return out


def claim_verdict(c: Any) -> str:
    """One phrase for a quoted claim against this machine's numbers."""
    if c.low is not None and c.high is not None:
        if c.measured_min is None or c.measured_max is None:
            return "not testable here"
        inside = c.low <= c.measured_min and c.measured_max <= c.high
        return "consistent here" if inside else "not borne out here"
    if c.cpu_s is not None and c.cpu_epoch_s is not None:
        return "consistent here" if c.cpu_epoch_s >= 0.5 * c.cpu_s else "not borne out here"
    return "not testable here"


def training_verdict(result: ScanResult) -> list[str]:
    """What bounds training on this machine, in a few plain sentences from the measured steps:
    per network and device, the throughput its steps reached with their working set in each
    level (largest batch, all threads), what the model says bounds them, and what would change
    it. Empty without a study."""
    out: list[str] = []
    pts = [p for p in result.training.points if F.finite(p.flops) and p.flops > 0 and F.finite(p.measured_s)
           and p.measured_s > 0]
    for fam in [f for f in FAMILY_ORDER if any(p.model == f for p in pts)]:
        for dev in sorted({p.device for p in pts if p.model == fam}):
            fp = [p for p in pts if p.model == fam and p.device == dev]
            dres = result.devices.get(dev)
            order = [lv.name for lv in dres.levels] if dres else []
            b = max(p.batch for p in fp)
            th = "threads_all" if any(p.threads == "threads_all" and p.batch == b for p in fp) else "threads_1"
            top = [p for p in fp if p.batch == b and p.threads == th]
            by_level: dict[str, list[float]] = {}
            for p in top:
                by_level.setdefault(p.level, []).append(p.flops / p.measured_s / 1e9)
            levels = sorted(by_level, key=lambda n: order.index(n) if n in order else -1)
            # the tiny steps sized for call overhead say nothing of a level: left out here
            rates = [(n, max(by_level[n])) for n in levels if n != "overhead"]
            name = _family_name(fam) + (f" on the {dev.upper()}" if len(result.devices) > 1 else "")
            thr = top[0].n_threads if top else 1
            if rates:
                parts = ", ".join(f"{F.fmt3(v)} GFLOP/s in {n}" for n, v in rates)
                s = (f"{name} (batch {b}, {thr} thread{'s' if thr != 1 else ''}): a step whose working set "
                     f"sits in each level reached {parts}")
                if len(rates) >= 2:
                    best_n, best_v = max(rates, key=lambda kv: kv[1])
                    last_n, last_v = rates[-1]
                    drop = 1 - last_v / best_v
                    s += (f"; in {last_n} it runs at {1 - drop:.0%} of its speed in {best_n}" if drop > 0.05 else
                          f"; it runs as fast in {last_n} as in any nearer level: at this batch the hierarchy "
                          "does not hold it back")
                out.append(s + ".")
            bounds: dict[str, int] = {}
            for p in fp:
                bounds[p.bound or "—"] = bounds.get(p.bound or "—", 0) + 1
            said = ", ".join(f"{n} by {bound_words(k)}" for k, n in sorted(bounds.items(), key=lambda kv: -kv[1]))
            s = f"The model bounds its {len(fp)} steps: {said}"
            if bounds.get("compute"):
                s += (" (op rate: each operation's own speed measured alone with its data in cache, the "
                      "machine's peak only for large GEMMs; the steps then wait on arithmetic, not on a "
                      "level's bandwidth)")
            out.append(s + ".")
            advice = []
            one = [p for p in fp if p.batch == 1 and p.bound == "overhead"]
            if one:
                advice.append("at batch 1 the step is mostly per-call cost: a batch of 16 or more spreads it")
            th1 = {(p.batch, p.working_set_bytes): p.measured_s for p in fp if p.threads == "threads_1"}
            gains = [th1[(p.batch, p.working_set_bytes)] / p.measured_s for p in fp
                     if p.threads == "threads_all" and (p.batch, p.working_set_bytes) in th1 and p.batch == b]
            if gains:
                advice.append(f"all threads ran the largest batch {statistics.median(gains):.2g}x faster than one")
            if len(rates) >= 2 and rates[-1][1] < 0.8 * max(v for _, v in rates):
                best = max(rates, key=lambda kv: kv[1])[0]
                lv = dres.level(best) if dres else None
                cap = f" ({F.size_text(lv.size_bytes)})" if lv is not None and lv.size_bytes else ""
                advice.append(f"a working set that fits {best}{cap} (a smaller batch or width) keeps the faster rate")
            if advice:
                out.append("What would change it: " + "; ".join(advice) + ".")
    return out


def _representative(pts: list[TrainingPoint]) -> TrainingPoint:
    """The point a reader would pick for a level: one the model predicted within 25 % where
    there is one (a missed point's shares would mislead), the largest batch, all threads if
    run, the middle working set of those."""
    good = [p for p in pts if F.finite(p.error) and abs(p.error) <= MISS]
    cand = good or pts
    b = max(p.batch for p in cand)
    cand = [p for p in cand if p.batch == b]
    th = "threads_all" if any(p.threads == "threads_all" for p in cand) else cand[0].threads
    cand = sorted((p for p in cand if p.threads == th), key=lambda p: p.working_set_bytes)
    return cand[len(cand) // 2]


def _op_kind(name: str) -> str:
    """An op's name without its block or layer number, in words: block1.conv3x3.bwd ->
    conv3x3 backward (the same op of every block is summed into one row)."""
    name = re.sub(r"^(block|layer|h|x)\d+\.", "", name)
    name = re.sub(r"^(h|x)\d+\.", "", name)
    for tail, words in ((".bwd", " backward"), (".w.update", " weight update"), (".b.update", " bias update"),
                        (".grad_sum", " gradient sum"), (".out.grad_stack", " gradient stack"), (".count", " count")):
        if name.endswith(tail):
            name = name[: -len(tail)] + words
    return name.replace("_", " ")


def _op_groups(ops: list[Any]) -> list[dict[str, Any]]:
    """The ops of one step summed by kind; bound from the group's slowest op, the achieved
    fraction weighted by time."""
    groups: dict[str, list[Any]] = {}
    for o in ops:
        if F.finite(o.time_s):
            groups.setdefault(_op_kind(o.name), []).append(o)
    out = []
    for kind, os_ in groups.items():
        t = sum(o.time_s for o in os_)
        fr = [(o.achieved_fraction, o.time_s) for o in os_ if F.finite(o.achieved_fraction)]
        wsum = sum(w for _, w in fr)
        out.append({"name": kind, "n": len(os_), "time_s": t, "bound": max(os_, key=lambda o: o.time_s).bound,
                    "achieved": sum(f * w for f, w in fr) / wsum if wsum else None})
    return sorted(out, key=lambda g: -g["time_s"])


def _op_tables(pts: list[TrainingPoint], level_order: dict[str, int]) -> list[dict[str, Any]]:
    """Per family (and device), one representative point per level: its slowest ops."""
    out = []
    with_ops = [p for p in pts if p.ops]
    for fam in [f for f in FAMILY_ORDER if any(p.model == f for p in with_ops)] + \
            sorted({p.model for p in with_ops} - set(FAMILY_ORDER)):
        for dev in sorted({p.device for p in with_ops if p.model == fam}):
            fp = [p for p in with_ops if p.model == fam and p.device == dev]
            levels = sorted({p.level for p in fp}, key=lambda n: (level_order.get(n, 99), n))
            tables = []
            for lv in levels:
                p = _representative([q for q in fp if q.level == lv])
                ops = _op_groups(p.ops)
                total = sum(o["time_s"] for o in ops) or None
                rows = [{"name": o["name"], "n": o["n"], "time": duration(o["time_s"]),
                         "share": pct(o["time_s"] / total, signed=False) if total else "—",
                         "bound": bound_words(o["bound"]), "achieved": pct(o["achieved"], signed=False)}
                        for o in ops[:TOP_OPS]]
                rest = ops[TOP_OPS:]
                rest_s = sum(o["time_s"] for o in rest)
                tables.append({
                    "level": _level_words(lv), "shape": _shape(p), "ws": F.size_text(p.working_set_bytes),
                    "batch": num(p.batch), "threads": F.THREAD_LABELS.get(p.threads, p.threads),
                    "measured": duration(p.measured_s), "predicted": duration(p.predicted_s),
                    "rows": rows, "rest": {"n": len(rest), "time": duration(rest_s),
                                           "share": pct(rest_s / total, signed=False) if total else "—"}
                    if rest else None})
            out.append({"family": fam, "device": dev, "name": _family_name(fam), "tables": tables})
    return out


def _seed_rows(rows: list[SeedRow]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        claimed = duration(r.claimed_s)
        out.append({
            "task": SEED_TASKS.get(r.task, r.task.replace("_", " ")), "device": r.device.upper(),
            "family": _family_name(r.model), "workload": r.workload, "predicted": duration(r.predicted_s),
            "check": r.check, "check_measured": duration(r.check_measured_s),
            "check_predicted": duration(r.check_predicted_s), "check_error": pct(r.check_error),
            "check_miss": F.finite(r.check_error) and abs(r.check_error) > MISS,
            "claimed": claimed + (f" ({r.claimed_hardware})" if r.claimed_hardware and claimed != "—" else ""),
            "threads": f"{r.threads} thread{'s' if r.threads != 1 else ''}" if r.threads else "",
            "bound": bound_words(r.bound) if r.bound else "—", "bound_text": r.bound_text, "note": r.note})
    return out


def _training_view(result: ScanResult) -> dict[str, Any] | None:
    tr = result.training
    pts = tr.points
    if not pts:
        return None
    level_order = {lv.name: i for dev in result.devices.values() for i, lv in enumerate(dev.levels)}
    level_order.setdefault("overhead", -1)
    summary = []
    for dev, th in sorted({(p.device, p.threads) for p in pts}):
        gp = [p for p in pts if (p.device, p.threads) == (dev, th) and F.finite(p.error)]
        big = [abs(p.error) for p in gp if p.batch >= 16]
        one = [abs(p.error) for p in gp if p.batch == 1]
        summary.append({"device": dev.upper(), "threads": F.THREAD_LABELS.get(th, th), "n": len(gp),
                        "big": pct(statistics.median(big), signed=False) if big else "—",
                        "one": pct(statistics.median(one), signed=False) if one else "—"})
    epochs = [{"device": k.upper(), "threads": e.threads, "dims": "-".join(map(str, e.dims)), "batch": e.batch,
               "measured": duration(e.epoch_s), "predicted": duration(e.predicted_epoch_s), "error": pct(e.error),
               "complete": e.complete} for k, e in tr.mnist.items()]
    speedup = [{"width": s.width, "batch": s.batch, "cpu": duration(s.cpu_s), "gpu": duration(s.gpu_s),
                "ratio": f"{s.gpu_over_cpu:.2f}×"} for s in tr.speedup]
    wins = [{"batch": b, "width": w} for b, w in tr.gpu_wins_from_width.items() if w is not None]
    families = _family_tables(pts)
    return {"families": families, "summary": summary, "epochs": epochs, "speedup": speedup,
            "verdict": training_verdict(result),
            "ops": _op_tables(pts, level_order), "seed": _seed_rows(tr.seed_table),
            "claims": [{"text": c.text, "finding": c.finding, "verdict": claim_verdict(c)} for c in tr.claims],
            "skipped": len(tr.skipped), "kept": len(pts), "formula": tr.method,
            "misses": sum(f["misses"] for f in families), "wins": wins,
            "names": [_family_name(f["family"]) for f in families],
            "has_mlp": any(p.model == "mlp" for p in pts),
            "has_torch": any(p.model != "mlp" for p in pts)}


def _n(v: Any) -> float:
    return float(v) if F.finite(v) else math.inf


def _div(a: Any, b: float) -> float | None:
    return a / b if F.finite(a) else None


def _loaded_rows(dev: DeviceResult) -> list[dict[str, Any]]:
    return [{"threads": num(r.streaming_threads), "kernel": r.kernel, "bw": num(r.bandwidth_gbs),
             "lat": num(r.latency_ns)} for r in dev.loaded_latency]


def _gpu_views(dev: DeviceResult, salt: str) -> dict[str, Any]:
    """The GPU's own sections: near/far L2 halves, shared memory, the host<->device link."""
    ex = dev.extra
    parts = None
    if ex.l2_partitions is not None:
        lp = ex.l2_partitions
        parts = {"buffer": F.size_text(lp.buffer_bytes), "load": lp.load, "note": lp.note,
                 "sms": [{"sm": r.sm, "near": num(r.near_cycles), "far": num(r.far_cycles),
                          "near_ns": num(r.near_ns), "far_ns": num(r.far_ns), "ratio": num(r.ratio),
                          "near_fraction": pct(r.near_fraction, signed=False), "seen": r.split_seen}
                         for r in lp.sms],
                 "pairs": [{"a": q.sm_a, "b": q.sm_b, "differ": pct(q.addresses_classed_differently, signed=False)}
                           for q in lp.pairs],
                 "figure": _svg(lambda: F.l2_hop_figure(dev), salt + "l2")}
    smem = None
    if ex.shared_memory is not None:
        sm = ex.shared_memory
        smem = {"latency_cycles": num(sm.latency_cycles), "latency_ns": num(sm.latency_ns),
                "read_gbs": num(sm.read_gbs), "per_clock": num(sm.bytes_per_clock_per_sm),
                "declared_block": F.size_text(sm.declared_per_block_bytes),
                "declared_optin": F.size_text(sm.declared_per_block_optin_bytes),
                "declared_sm": F.size_text(sm.declared_per_sm_bytes), "verified": sm.verified}
    link = None
    if ex.host_link is not None:
        link = {"peaks": [{"what": k.replace("_", " "), "gbs": num(v)} for k, v in ex.host_link.peak_gbs.items()],
                "verified": ex.host_link.verified,
                "figure": _svg(lambda: F.transfer_figure(dev), salt + "link")}
    bypass = [{"name": b.name, "size": F.size_text(b.size_bytes) if b.size_bytes else "memory",
               "cycles": num(b.latency_cycles), "ns": num(b.latency_ns)} for b in ex.l1_bypass_levels]
    return {"l2_partitions": parts, "shared_memory": smem, "host_link": link, "bypass": bypass}


def _evidence(dev: DeviceResult) -> list[dict[str, Any]]:
    """The per-stage records not shown elsewhere, as (title, value) for the details block."""
    ex = dev.extra
    out = []
    if ex.line_size is not None:
        out.append({"title": "line size probes", "value": dataclasses.asdict(ex.line_size)})
    if ex.tlb_reach_4k_bytes:
        out.append({"title": "TLB reach with 4 KiB pages", "value": F.size_text(ex.tlb_reach_4k_bytes)})
    if ex.memory_page_local is not None:
        out.append({"title": "memory, page-local chase", "value": dataclasses.asdict(ex.memory_page_local)})
    for c in ex.memory_side_checks:
        out.append({"title": f"memory-side check of {c.level}", "value": dataclasses.asdict(c)})
    for name, e in ex.sharing.items():
        v = {k: x for k, x in dataclasses.asdict(e).items() if k not in ("samples_alone", "samples_loaded")}
        out.append({"title": f"sharing of {name}", "value": v})
    if dev.bandwidth is not None:
        for su in dev.bandwidth.levels:
            out.append({"title": f"bandwidth working sets, {su.level}",
                        "value": {"threads_1": F.size_text(su.size_bytes_threads_1),
                                  "threads_all": F.size_text(su.size_bytes_threads_all),
                                  "threads": su.threads_all}})
    return out


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
        {"figure": "Which repetition each figure is",
         "text": "Every sample is kept in scan.json and curves.csv; each figure says which statistic of them it "
                 "is. Ceilings (bandwidth, FMA, GEMM) are the best repetition: other tenants only ever slow a "
                 "run down, so the fastest is the closest to what the hardware gives. The CPU's cache curve is "
                 "read by each size's lower quartile over several passes on fresh pages: the minimum would keep "
                 "one lucky page placement, the median one busy spell. The GPU's curve, one pass on a device "
                 "no one shares, is read by its best repetition. The training model's inputs and step times are "
                 "medians: they are expectations, not ceilings. A figure that breaks physics (a streaming store "
                 "above its read-for-ownership saving, a farther level faster than a nearer one, all threads "
                 "slower than one) is struck through with its reason and is never a roof or a model input."},
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
def _rates_view(dev: DeviceResult) -> dict[str, Any] | None:
    """The rate table (scan/rates.py), as the report shows it: per thread count the GEMM and
    convolution ladders, the element-wise classes per level and the call overheads."""
    rt = dev.rates
    if rt is None:
        return None
    tks = [tk for tk in ("threads_1", "threads_all") if tk in rt.threads]

    def rate(v: Any) -> str:
        return num(v) if F.finite(v) else "—"

    gemm = {}
    for tk in tks:
        for g in rt.threads[tk].gemm + rt.threads[tk].bmm:
            key = f"{g.batch} × " if g.batch > 1 else ""
            gemm.setdefault(f"{key}{g.m}×{g.k} · {g.k}×{g.n} ({g.dtype})", {})[tk] = rate(g.gflops)
    conv = {}
    for tk in tks:
        for c in rt.threads[tk].conv:
            conv.setdefault(f"{c.kernel}×{c.kernel}/{c.stride}, {c.c_in}→{c.c_out} ch, {c.hw}² px, "
                            f"batch {c.batch}, {c.direction}", {})[tk] = rate(c.gflops)
    classes = {}
    for tk in tks:
        for klass, rows in [*rt.threads[tk].classes.items(), *rt.threads[tk].operators.items()]:
            for r in rows:
                classes.setdefault((klass, r.level), {})[tk] = rate(r.gbs)
    over = {}
    for tk in tks:
        for klass, v in rt.threads[tk].call_overhead_s.items():
            over.setdefault(klass, {})[tk] = f"{v * 1e6:.3g}" if F.finite(v) else "—"
    return {"library": rt.library, "method": rt.method, "statistic": rt.statistic, "absent": rt.absent,
            "threads": [F.THREAD_LABELS.get(tk, tk) for tk in tks], "keys": tks,
            "gemm": [{"what": k, **v} for k, v in gemm.items()], "conv": [{"what": k, **v} for k, v in conv.items()],
            "classes": [{"what": f"{k[0]} in {k[1]}", **v} for k, v in classes.items()],
            "overhead": [{"what": k, **v} for k, v in over.items()]}


def _device_view(result: ScanResult, key: str, dev: DeviceResult) -> dict[str, Any]:
    widths = _diagram_widths(dev.levels)
    salt = f"{key}-"
    has_bw = bool(F.bandwidth_curves(dev))
    dec = dev.declared
    declared = {"source": dec.source, "model": dec.model, "cores (logical)": dec.cores_logical,
                "cores (usable)": dec.cores_usable, "memory": F.size_text(dec.memory_total_bytes),
                "clock (advertised)": f"{dec.clock_ghz:.3g} GHz" if dec.clock_ghz else None,
                **{f"FMA FLOP/cycle {k}": v for k, v in dec.fma_flops_per_cycle.items()}}
    if dec.cpu is not None:
        declared.update({"vendor": dec.cpu.vendor, "arch": dec.cpu.arch,
                         "transparent huge pages": dec.cpu.transparent_hugepage})
    if dec.gpu is not None:
        declared.update({k: v for k, v in dataclasses.asdict(dec.gpu).items() if k != "nvml" and v is not None})
    bw = dev.bandwidth
    return {
        "key": key, "kind": dev.kind, "name": dev.name,
        "clock": num(dev.clock_ghz), "line": F.size_text(dev.line_size_bytes),
        "cores": dec.cores_usable,
        "cores_label": "SMs" if dev.kind == "gpu" else "usable CPUs",
        "levels": [_level_view(lv, i, widths) for i, lv in enumerate(dev.levels)],
        "has_level_bw": any(lv.bandwidth_gbs for lv in dev.levels),
        "bw_kernels": list(dict.fromkeys(c["kernel"] for lv in dev.levels for c in _bw_cells(lv))),
        "bw_table": {"statistic": bw.statistic, "threads_1": bw.threads_1, "threads_all": bw.threads_all,
                     "counting": bw.counting} if bw else None,
        "match": match_levels(dev),
        "line_row": _line_row(dev),
        "latency": _svg(lambda: F.latency_figure(dev), salt + "lat"),
        "bandwidth": _svg(lambda: F.bandwidth_figure(dev), salt + "bw") if has_bw else
        {"svg": None, "missing": "no bandwidth curve", "error": None},
        "roofline": _svg(lambda: F.roofline_figure(dev, result.training.device_points(key)), salt + "roof"),
        "loaded": _svg(lambda: F.loaded_latency_figure(dev), salt + "ll") if dev.loaded_latency else
        {"svg": None, "missing": "no loaded-latency points", "error": None},
        "loaded_rows": _loaded_rows(dev),
        "compute": _compute_view(dev),
        "rates": _rates_view(dev),
        "noise": _noise_rows(dev),
        "stages": _stage_rows(dev),
        "steal_notable": num(dev.extra.steal_notable_percent),
        "unstable": [{"name": lv.name, "spread": pct(lv.latency_spread, signed=False),
                      "notes": "; ".join(n.text for n in lv.notes)} for lv in dev.levels if lv.unstable],
        "warnings": [w.text for w in dev.warnings],
        "figure_flags": [{"where": lv.name, "figure": f.figure, "reason": f.reason} for lv in dev.levels for f in lv.flags]
        + [{"where": "compute", "figure": f.figure, "reason": f.reason} for f in (dev.compute.flags if dev.compute else [])],
        "declared": {k: v for k, v in declared.items() if v is not None},
        "flags": len(dec.cpu.flags) if dec.cpu else 0,
        "evidence": _evidence(dev),
        "gpu": _gpu_views(dev, salt) if dev.kind == "gpu" else None,
        "thread_keys": THREAD_KEYS,
    }


def _cpu_vs_gpu(result: ScanResult) -> list[dict[str, Any]] | None:
    """Key figures of both devices side by side, when the scan has both."""
    cpu, gpu = result.devices.get("cpu"), result.devices.get("gpu")
    if cpu is None or gpu is None:
        return None
    rows = []

    def add(what: str, a: Any, b: Any, unit: str) -> None:
        ratio = f"{b / a:.3g}×" if F.finite(a) and F.finite(b) and a else "—"
        rows.append({"what": what, "cpu": num(a), "gpu": num(b), "unit": unit, "ratio": ratio})

    def first(dev: DeviceResult):
        return next((lv for lv in dev.levels if lv.size_bytes), None)

    def memory(dev: DeviceResult):
        return next((lv for lv in dev.levels if not lv.size_bytes), None)

    add("levels (caches)", len([lv for lv in cpu.levels if lv.size_bytes]),
        len([lv for lv in gpu.levels if lv.size_bytes]), "")
    l1c, l1g = first(cpu), first(gpu)
    add("first-level latency", l1c.latency_ns if l1c else None, l1g.latency_ns if l1g else None, "ns")
    mc, mg = memory(cpu), memory(gpu)
    add("memory latency", mc.latency_ns if mc else None, mg.latency_ns if mg else None, "ns")
    rc = F.level_bandwidth(mc) if mc else None
    rg = F.level_bandwidth(mg) if mg else None
    add("memory bandwidth (best kernel, all threads)", rc[0] if rc else None, rg[0] if rg else None, "GB/s")
    pc = max((v for _, v, k in F.compute_ceilings(cpu) if k != "theoretical"), default=None)
    pg = max((v for _, v, k in F.compute_ceilings(gpu) if k != "theoretical"), default=None)
    add("best measured compute ceiling", pc, pg, "GFLOP/s")
    return rows


def _study_state(result: ScanResult) -> str:
    """What the settings line says of the training study: what it measured, not what was asked
    (a study asked for that measured nothing says why: its warnings are in the Noise section)."""
    tr = result.training
    n = len(tr.points)
    if n:
        models = sorted({p.model for p in tr.points})
        return f"{n} points ({', '.join(models)})" + (", seed table" if tr.seed_table else "")
    if result.settings.train:
        return "asked for, no point measured (see the warnings)"
    return "no"


def _predictions_view(result: ScanResult) -> list[dict[str, Any]]:
    if not result.predictions:
        return []
    from memprobe.report.predict import scan_predictions

    return scan_predictions(result)


def build_context(result: ScanResult, json_name: str = "scan.json", csv_name: str | None = "curves.csv") -> dict[str, Any]:
    devices = [_device_view(result, k, d) for k, d in result.devices.items()]
    training = _training_view(result)
    st = result.settings
    settings = {"device": st.device, "profile": "quick" if st.quick else "default", "seed": st.seed,
                "repetitions": st.repetitions if st.repetitions else "plan default",
                "max size": F.size_text(st.max_size_bytes) if st.max_size_bytes else "grows until memory",
                "training study": _study_state(result), "memprobe": st.memprobe_version or "—"}
    plans = {k: v for k, v in (("CPU plan", st.cpu_plan), ("GPU plan", st.gpu_plan),
                               ("Training plan", st.training_plan)) if v}
    return {
        "title": f"memprobe: {result.host}, {result.started_at}",
        "host": result.host,
        "started_at": result.started_at,
        "duration": num(result.duration_s),
        "complete": result.complete,
        "schema": result.schema,
        "settings": settings,
        "plans": plans,
        "fixture": st.fixture,
        "scan_warnings": [w.text for w in result.warnings],
        "devices": devices,
        "cpu_vs_gpu": _cpu_vs_gpu(result),
        "training": training,
        "predictions": _predictions_view(result),
        "training_fig": _svg(lambda: F.training_figure(result), "train") if training else None,
        "method": _method(result),
        "json_name": json_name,
        "csv_name": csv_name,
        "any_bw": any(d["bandwidth"]["svg"] or d["has_level_bw"] for d in devices),
        "any_roof": any(d["roofline"]["svg"] for d in devices),
        "any_loaded": any(d["loaded_rows"] for d in devices),
        "any_gpu": any(d["gpu"] for d in devices),
    }


def render_html(result: ScanResult, json_name: str = "scan.json", csv_name: str | None = "curves.csv") -> str:
    """The report of one scan as one self-contained HTML page (the caller writes it)."""
    return environment().get_template("report.html").render(**build_context(result, json_name, csv_name))
