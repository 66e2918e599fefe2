"""The data flows one way (probe -> samples -> inference -> result -> report), and the imports
show it: inference reads curves and writes result records, never the scan or the declared
facts; the report reads result records only; the GPU scan does not lean on the CPU scan.
Read from the source (ast), so a lazy import inside a function counts too."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "memprobe"


def memprobe_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("memprobe"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("memprobe")}
    return out


def modules(folder: str) -> list[Path]:
    return sorted((PKG / folder).glob("*.py"))


def _allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", modules("infer"), ids=lambda p: p.name)
def test_infer_reads_no_scan_and_no_declared_facts(path):
    bad = {m for m in memprobe_imports(path) if _allowed(m, ("memprobe.scan", "memprobe.platform"))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", modules("report"), ids=lambda p: p.name)
def test_report_reads_result_records_only(path):
    bad = {m for m in memprobe_imports(path) if not _allowed(m, ("memprobe.result", "memprobe.report"))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_gpu_scan_does_not_import_the_cpu_scan():
    bad = {m for m in memprobe_imports(PKG / "scan" / "gpu.py")
           if _allowed(m, ("memprobe.scan.cpu", "memprobe.scan.ceilings"))}
    assert not bad, sorted(bad)


def test_no_code_branches_on_message_text():
    """Notes and warnings carry a code for code to test; their text is for people. A comparison
    of a message's text (`"..." in w.text`, `w.text.startswith(...)`) would steer code by prose."""
    hits = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
                right = node.comparators[-1]
                if isinstance(right, ast.Attribute) and right.attr == "text":
                    hits.append(f"{path.name}:{node.lineno}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("startswith", "endswith", "find")
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "text"):
                hits.append(f"{path.name}:{node.lineno}")
    assert not hits, hits


def test_nothing_in_memprobe_imports_contrib_and_contrib_reads_result_records_only():
    """memprobe/contrib (the ReFrame check) sits beside the flow: it may import ReFrame, so no
    other module imports it, and it reads scans through the typed result only."""
    users = [p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")
             if "contrib" not in p.relative_to(PKG).parts
             and any(_allowed(m, ("memprobe.contrib",)) for m in memprobe_imports(p))]
    assert not users, users
    for path in modules("contrib"):
        bad = {m for m in memprobe_imports(path) if not _allowed(m, ("memprobe.result", "memprobe.contrib"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"
