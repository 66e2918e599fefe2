"""Test session setup: put numba.cuda in its simulator before any test module imports it
(numba.cuda fixes its mode at first import), so the GPU kernels' logic runs here without a GPU.
The variable is removed again at once, so subprocesses spawned by tests see the machine as it
is. MEMPROBE_REAL_GPU=1 (benchmarks/gpu_smoke.sh on a GPU machine) leaves the simulator off so
the `gpu`-marked tests use the real device."""

import importlib.util
import os
import sys

if (os.environ.get("MEMPROBE_REAL_GPU") != "1" and "numba.cuda" not in sys.modules
        and importlib.util.find_spec("numba_cuda") is not None):
    _prev = os.environ.get("NUMBA_ENABLE_CUDASIM")
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    try:
        from numba import cuda  # noqa: F401
    except Exception:  # a broken install: the GPU tests skip and say why
        pass
    finally:
        if _prev is None:
            os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
        else:
            os.environ["NUMBA_ENABLE_CUDASIM"] = _prev


import json  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _scans_written_validate_against_the_schema(monkeypatch):
    """Every scan.json a test writes through the real code path (ScanResult.save: the CLI, the
    scan, the fixture script) is checked against the JSON Schema shipped in the package."""
    try:
        import jsonschema
    except ImportError:  # the test extra brings it; without it the schema tests skip and say so
        yield
        return
    from memprobe.result import SCHEMA_FILE, ScanResult

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    real_save = ScanResult.save

    def save(self, path):
        real_save(self, path)
        validator.validate(json.loads(open(path, encoding="utf-8").read()))

    monkeypatch.setattr(ScanResult, "save", save)
    yield


@pytest.fixture
def small_cpu_device():
    """A CPU with a 48 KiB L1, a 2 MiB L2 and memory, each with a bandwidth for every kernel:
    what the training models read from a scan, for tests that run a small real study."""
    from memprobe.result import DeviceResult, Level

    def lv(name, size, gbs):
        return Level(name, size, 1.0, 4.0, {k: {"threads_1": gbs, "threads_all": 2 * gbs}
                                             for k in ("read", "write", "copy", "triad")})
    return DeviceResult("cpu", "test", levels=[lv("L1", 48 << 10, 300.0), lv("L2", 2 << 20, 100.0),
                                               lv("memory", None, 15.0)])


@pytest.fixture(autouse=True)
def _default_floating_point_state():
    """Each test starts from the processor's default floating-point state: memprobe flushes
    denormals to zero while it times PyTorch (torch_families.flush_denormals, process-wide),
    and a later test's float arithmetic (hypothesis refuses to run) must not inherit that."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)
