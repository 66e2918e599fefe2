"""Stage 4 of the flow (probe -> samples -> inference -> **result** -> report).

The result model: plain dataclasses that carry everything a scan measured, inferred and
declared, with a versioned JSON form. The report, the CSV export and `memprobe report` read
only this, so a saved scan from any machine re-renders the same way.

Format history (bump SCHEMA when a reader of the old form would misread the new one):
  memprobe/1  first version: per-device levels, curves, declared facts, compute ceilings,
              loaded latency, training study, top-level "complete" flag.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "memprobe/1"
BANDWIDTH_KERNELS = ("read", "write", "copy", "triad")
THREAD_KEYS = ("threads_1", "threads_all")


class SchemaError(ValueError):
    """A JSON document that is not a memprobe scan this version can read."""


@dataclass
class CurvePoint:
    """One x value of a sweep with every repetition kept (the noise stays visible)."""

    x: float
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def best(self) -> float:
        """Lowest sample: for latency, contention from other tenants only ever adds time."""
        return min(self.samples) if self.samples else math.nan

    @property
    def low(self) -> float:
        """25th percentile of the samples (linear interpolation, as NumPy's default). Level
        inference reads this: with samples from fresh buffers at different times, the minimum
        picks one lucky page placement (a shelf on a cache edge, a spurious level) while the
        median follows a neighbour that was busy for a whole pass; the lower quartile does
        neither (see memprobe/scan/cpu.py, stage_latency_recheck)."""
        if not self.samples:
            return math.nan
        if len(self.samples) == 1:
            return float(self.samples[0])
        return statistics.quantiles(self.samples, n=4, method="inclusive")[0]

    @property
    def spread(self) -> float:
        """Relative spread (max-min)/median of the repetitions; 0 for a single sample."""
        if len(self.samples) < 2:
            return 0.0
        med = self.median
        return (max(self.samples) - min(self.samples)) / med if med else math.nan


@dataclass
class Curve:
    """A raw sweep: what a probe returned, converted to a unit, decided nothing."""

    name: str  # e.g. "latency_hugepage", "bandwidth_triad_threads_all"
    kind: str  # "latency" | "bandwidth" | "stride" | "loaded_latency" | ...
    x_name: str  # "size_bytes", "stride_bytes", ...
    unit: str  # "ns", "cycles", "GB/s"
    points: list[CurvePoint] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def xs(self) -> list[float]:
        return [p.x for p in self.points]

    def medians(self) -> list[float]:
        return [p.median for p in self.points]

    def bests(self) -> list[float]:
        return [p.best for p in self.points]

    def lows(self) -> list[float]:
        return [p.low for p in self.points]


@dataclass
class Level:
    """One level of the hierarchy as measured; the last one of a device is main memory."""

    name: str
    size_bytes: int | None
    latency_ns: float | None
    latency_cycles: float | None
    bandwidth_gbs: dict[str, dict[str, float | None]] = field(default_factory=dict)
    latency_spread: float = 0.0  # relative spread of the plateau's points
    unstable: bool = False  # spread too wide to trust
    size_range_bytes: list[int] | None = None  # the two sweep sizes around the boundary
    sharing: str | None = None  # "private" | "shared" | None (measured, see probes)
    notes: list[str] = field(default_factory=list)


@dataclass
class DeviceResult:
    kind: str  # "cpu" | "gpu"
    name: str
    levels: list[Level] = field(default_factory=list)
    line_size_bytes: int | None = None
    clock_ghz: float | None = None  # measured, never the declared one
    declared: dict[str, Any] = field(default_factory=dict)
    curves: list[Curve] = field(default_factory=list)
    compute: dict[str, Any] = field(default_factory=dict)
    loaded_latency: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def curve(self, name: str) -> Curve | None:
        return next((c for c in self.curves if c.name == name), None)


@dataclass
class ScanResult:
    host: str
    started_at: str
    complete: bool = False
    duration_s: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, DeviceResult] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=lambda: {"points": []})
    warnings: list[str] = field(default_factory=list)
    schema: str = SCHEMA

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": self.schema,
            "host": self.host,
            "started_at": self.started_at,
            "complete": self.complete,
            "duration_s": self.duration_s,
            "settings": self.settings,
            "warnings": self.warnings,
        }
        for key, dev in self.devices.items():
            out[key] = asdict(dev)
        out["training"] = self.training
        return _clean(out)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Any) -> "ScanResult":
        if not isinstance(d, dict):
            raise SchemaError("not a memprobe scan: top level is not a JSON object")
        schema = d.get("schema")
        if schema != SCHEMA:
            raise SchemaError(f"not a memprobe scan this version reads: schema is {schema!r}, expected {SCHEMA!r}")
        try:
            devices = {k: _device_from_dict(d[k]) for k in ("cpu", "gpu") if d.get(k) is not None}
            return cls(
                host=str(d["host"]),
                started_at=str(d["started_at"]),
                complete=bool(d["complete"]),
                duration_s=d.get("duration_s"),
                settings=dict(d.get("settings") or {}),
                devices=devices,
                training=dict(d.get("training") or {"points": []}),
                warnings=list(d.get("warnings") or []),
                schema=schema,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"malformed memprobe scan: {exc.__class__.__name__}: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "ScanResult":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "ScanResult":
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise SchemaError(f"cannot read {p}: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError(f"{p} is not a text file (binary content)") from None
        return cls.from_json(text)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    # ---- CSV ------------------------------------------------------------------------------
    def curves_csv(self) -> str:
        """Every raw curve in long form: one row per (device, curve, x), all samples kept."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["device", "curve", "kind", "x_name", "x", "unit", "median", "min", "max", "n", "samples"])
        for key, dev in self.devices.items():
            for c in dev.curves:
                for p in c.points:
                    s = p.samples
                    w.writerow([key, c.name, c.kind, c.x_name, _num(p.x), c.unit,
                                _num(p.median), _num(min(s)) if s else "", _num(max(s)) if s else "",
                                len(s), " ".join(_num(v) for v in s)])
        return buf.getvalue()


def _num(v: float) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every reader can parse the file."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _device_from_dict(d: dict[str, Any]) -> DeviceResult:
    levels = [Level(**lv) for lv in d.get("levels", [])]
    curves = [
        Curve(
            name=c["name"], kind=c["kind"], x_name=c["x_name"], unit=c["unit"],
            points=[CurvePoint(x=p["x"], samples=[v for v in p["samples"] if v is not None])
                    for p in c.get("points", [])],
            params=dict(c.get("params") or {}),
        )
        for c in d.get("curves", [])
    ]
    return DeviceResult(
        kind=d["kind"], name=d["name"], levels=levels,
        line_size_bytes=d.get("line_size_bytes"), clock_ghz=d.get("clock_ghz"),
        declared=dict(d.get("declared") or {}), curves=curves,
        compute=dict(d.get("compute") or {}),
        loaded_latency=list(d.get("loaded_latency") or []),
        warnings=list(d.get("warnings") or []), extra=dict(d.get("extra") or {}),
    )
