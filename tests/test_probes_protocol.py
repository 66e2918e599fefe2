"""Every probe keeps the one protocol (probes/protocol.py): setup, run returning raw samples,
verify that raises ProbeError on a wrong result, close. The GPU probes are checked by their
methods only here (their kernels run under the simulator in test_gpu_sim.py)."""

import ast
from pathlib import Path

import numpy as np
import pytest

from memprobe.probes.protocol import PROBES, Probe, ProbeError

ROOT = Path(__file__).resolve().parent.parent


def _class_methods(spec: str) -> set[str]:
    """Methods a class defines, read from its source (no import: CUDA modules need numba.cuda)."""
    mod, cls = spec.split(":")
    path = ROOT / "probes" / Path(*mod.split(".")[2:]).with_suffix(".py")
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    names = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    for base in node.bases:  # one level of inheritance inside the same module
        if isinstance(base, ast.Name):
            parent = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == base.id), None)
            if parent is not None:
                names |= {n.name for n in parent.body if isinstance(n, ast.FunctionDef)}
    attrs = {t.id for n in node.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    return names | attrs


@pytest.mark.parametrize("spec", PROBES)
def test_every_probe_has_the_protocol(spec):
    have = _class_methods(spec)
    missing = {"setup", "run", "verify", "close", "backend"} - have
    assert not missing, f"{spec} lacks {sorted(missing)}"


def test_cpu_probe_instances_are_probes():
    from memprobe.probes.cpu.bandwidth import BandwidthProbe, kernel_by_name
    from memprobe.probes.cpu.chase import ChaseProbe
    from memprobe.probes.cpu.compute import FmaProbe, GemmProbe
    from memprobe.probes.cpu.line import FalseSharingProbe, StrideProbe
    from memprobe.probes.cpu.loaded import SharingProbe

    for p in (ChaseProbe(), StrideProbe(size_bytes=1 << 20), FalseSharingProbe(), FmaProbe("float64"),
              GemmProbe(), SharingProbe(), BandwidthProbe(kernel_by_name("read"))):
        assert isinstance(p, Probe), type(p).__name__
        assert p.backend == "cpu" and p.name


def test_chase_verify_raises_on_a_broken_cycle():
    from memprobe.probes.cpu.chase import ChaseProbe

    p = ChaseProbe(slot_bytes=64, page_kind="4k")
    p.setup(64 << 10)
    try:
        assert p.verify() is True
        words = p.buffer.array.view(np.uint64)
        words[0] = words[0 + 8]  # slot 0 now skips its successor: two slots point alike
        with pytest.raises(ProbeError):
            p.verify()
    finally:
        p.close()


def test_stride_and_false_sharing_verify():
    from memprobe.probes.cpu.line import FalseSharingProbe, StrideProbe

    sp = StrideProbe(size_bytes=1 << 20)
    try:
        assert len(sp.run(64, 1, target_ns=1e5)) == 1 and sp.verify()
        sp.buffer.array[0] = sp.buffer.array[sp.block_bytes // 8 * 3]  # a hop into another block
        with pytest.raises(ProbeError):
            sp.verify()
    finally:
        sp.close()
    fs = FalseSharingProbe(iters=2000)
    fs.setup()
    try:
        fs.run(64, 1)
        assert fs.verify()
        fs.buffer.array[0] -= 1  # one add "lost"
        with pytest.raises(ProbeError):
            fs.verify()
    finally:
        fs.close()
