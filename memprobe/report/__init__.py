"""Stage 5 of the flow (probe -> samples -> inference -> result -> **report**).

Renderers apart from data: each takes a `ScanResult` (loaded from scan.json, never the running
machine) and returns or writes one artefact; the CLI only loads, calls and writes.

- `render_html(result, json_name="scan.json", csv_name="curves.csv") -> str`: the report page.
- `render_compare(a, b) -> str`: two scans side by side (two machines, settings, CPU vs GPU).
- `plot(result, what, out_path) -> None`: one figure (latency | bandwidth | roofline) as
  png, svg or pdf, for papers and slides.
All figures come from one module, `figures.py`; the page layouts are jinja2 templates in
`templates/`.
"""

from __future__ import annotations

from memprobe.report.compare import render_compare
from memprobe.report.html import render_html
from memprobe.report.plot import FIGURES, FORMATS, plot

__all__ = ["render_html", "render_compare", "plot", "FIGURES", "FORMATS"]
