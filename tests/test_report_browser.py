"""Stage 5 (report) in a real browser: headless Chromium opens a rendered report from disk.

Checks that every section is in the DOM the browser built, that a screenshot comes out, and
that the page asked for nothing over the network. The network check reads Chromium's own net
log (--log-net-log): every URL request a *page* starts carries the page's origin as initiator
("null" for a file:// page), while the browser's background traffic carries "not an origin";
a control page with an external image proves the check can see a request. Host resolution is
mapped to nothing (--host-resolver-rules), so no request could leave the machine anyway.

Skips, saying why, where Chromium is not installed (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from memprobe.report import render_html
from memprobe.report.html import SECTIONS
from memprobe.result import ScanResult

pytestmark = pytest.mark.browser

DATA = Path(__file__).parent / "data"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = os.environ.get("MEMPROBE_CHROMIUM") or next(
    (p for p in (shutil.which(c) for c in CANDIDATES) if p), None)

if CHROMIUM is None:
    pytest.skip("headless Chromium not found (install Debian's `chromium`, or set MEMPROBE_CHROMIUM)",
                allow_module_level=True)

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND",
]


def chromium(tmp: Path, url: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def page_requests(netlog: Path) -> list[str]:
    """URLs the page itself asked for (not the browser's own background requests)."""
    log = json.loads(netlog.read_text(encoding="utf-8", errors="replace"))
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    out = []
    for ev in log["events"]:
        p = ev.get("params") or {}
        if names.get(ev["type"]) == "URL_REQUEST_START_JOB" and "url" in p:
            if p.get("initiator") != "not an origin" and not p["url"].startswith(("file:", "data:")):
                out.append(p["url"])
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report")
    scan = ScanResult.load(DATA / "scan_gpu.json")
    (d / "scan.json").write_text(scan.to_json())
    (d / "curves.csv").write_text(scan.curves_csv())
    path = d / "report.html"
    path.write_text(render_html(scan), encoding="utf-8")
    return path


def test_dom_has_every_section_and_no_request(report: Path, tmp_path: Path) -> None:
    netlog = tmp_path / "net.json"
    res = chromium(tmp_path, report.as_uri(), "--dump-dom", f"--log-net-log={netlog}")
    dom = res.stdout
    assert "<section" in dom, f"no DOM from Chromium (rc {res.returncode}): {res.stderr[-800:]}"
    for sid in SECTIONS:
        assert f'id="{sid}"' in dom, f"section {sid!r} missing from the browser's DOM"
    assert dom.count("<svg") >= 9  # figures parsed as inline SVG elements
    assert page_requests(netlog) == []


def _section(dom: str, sid: str) -> str:
    import re

    m = re.search(rf'<section id="{sid}">(.*?)</section>', dom, flags=re.S)
    assert m, f"section {sid!r} missing from the browser's DOM"
    return m.group(1)


def test_every_gpu_section_has_content(report: Path, tmp_path: Path) -> None:
    """On the GPU scan the real GPU path wrote (under the simulator): hierarchy, declared vs
    measured, near/far L2, bandwidth, roofline with its roofs, host link, CPU against GPU."""
    dom = chromium(tmp_path, report.as_uri(), "--dump-dom").stdout
    assert dom.count('class="hier"') == 2 and "GPU: Fake H100" in _section(dom, "summary")
    dvm = _section(dom, "declared-vs-measured")
    assert "shared by all SMs" in dvm and "per SM" in dvm
    assert _section(dom, "bandwidth").count("<svg") == 2
    roof = _section(dom, "roofline")
    assert roof.count("<svg") == 2 and "memory roof" in roof and "FMA float32" in roof
    gpu = _section(dom, "gpu")
    assert 'id="near-far-l2"' in gpu and 'id="host-link"' in gpu and gpu.count("<svg") == 2
    assert "<td" in gpu.split('id="near-far-l2"')[1].split('id="host-link"')[0]  # the per-SM table
    vs = _section(dom, "cpu-vs-gpu")
    assert vs.count("<tr") >= 5


def test_nothing_wider_than_1400_px(tmp_path: Path) -> None:
    """At a 1,400 px window no table or figure reaches past the page's column (a wide table
    would run to the window's edge): the screenshot is blank right of it, top to bottom."""
    pil = pytest.importorskip("PIL.Image", reason="Pillow (a matplotlib dependency) reads the screenshot")
    scan = ScanResult.load(DATA / "scan_small.json")
    page = tmp_path / "report.html"
    page.write_text(render_html(scan), encoding="utf-8")
    png = tmp_path / "wide.png"
    chromium(tmp_path, page.as_uri(), f"--screenshot={png}", "--window-size=1400,12000")
    with pil.open(png) as im:
        g = im.convert("L")
        w, h = g.size
        edge = (w - 1140) // 2 + 1140 + 4  # body: 1140 px wide, centred
        dark = [y for y in range(0, h, 4) if min(g.getpixel((x, y)) for x in range(edge, w, 4)) < 200]
    assert not dark, f"content right of {edge} px at y = {dark[:5]}"


def test_network_check_sees_a_request(tmp_path: Path) -> None:
    # control: a page that does fetch; if this finds nothing, the check above proves nothing
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://memprobe-control.invalid/x.png">'
                    "<p>control</p></body></html>")
    netlog = tmp_path / "net.json"
    chromium(tmp_path, page.as_uri(), "--dump-dom", f"--log-net-log={netlog}")
    assert any("memprobe-control.invalid" in u for u in page_requests(netlog))


def test_screenshot(report: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    res = chromium(tmp_path, report.as_uri(), f"--screenshot={png}", "--window-size=1280,4000")
    assert png.exists(), f"no screenshot (rc {res.returncode}): {res.stderr[-800:]}"
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000  # a blank page is a few KiB
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(png) as im:
        assert im.size == (1280, 4000)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100  # something drawn, not a blank page
