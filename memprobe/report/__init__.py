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

import importlib
from typing import Any

# imported on first use (PEP 562): the renderers pull in matplotlib and jinja2, which the
# terminal tables (report/text.py, report/pairing.py) and `memprobe infer` do not need
# (`plot` is not among them: the package attribute of that name is the submodule plot.py;
# import it as `from memprobe.report.plot import plot`)
_LAZY = {"render_compare": "compare", "render_html": "html", "FIGURES": "plot", "FORMATS": "plot"}

__all__ = ["render_html", "render_compare", "FIGURES", "FORMATS"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"memprobe.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'memprobe.report' has no attribute {name!r}")
