"""The reference network really learns, its gradients are right, and the GPU backend's logic
runs under the CUDA simulator at tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from memprobe.train.network import (CpuNetwork, NetShape, cpu_threads, reference_loss,
                                    synthetic_task, time_steps)


def test_loss_falls_on_separable_task():
    shape = NetShape((12, 32, 32, 4), batch=64)
    x, labels = synthetic_task(64, 12, 4, seed=3)
    net = CpuNetwork(shape, lr=0.1, seed=1)
    first = net.step(x, labels)
    for _ in range(150):
        last = net.step(x, labels)
    assert last < 0.3 * first
    # and it classifies what it was trained on
    logits = np.maximum(x @ net.params[0][0] + net.params[0][1], 0)
    logits = np.maximum(logits @ net.params[1][0] + net.params[1][1], 0)
    logits = logits @ net.params[2][0] + net.params[2][1]
    assert (logits.argmax(1) == labels).mean() > 0.9


@pytest.mark.parametrize("threads", [1, 2])
def test_gradients_match_finite_differences(threads):
    shape = NetShape((6, 5, 7, 4), batch=3)
    x, labels = synthetic_task(3, 6, 4, seed=5)
    net = CpuNetwork(shape, seed=2, threads=threads)
    with cpu_threads(threads):
        loss, grads = net.loss_and_grads(x, labels)
    p64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in net.params]
    assert loss == pytest.approx(reference_loss(p64, x, labels), rel=1e-5)
    eps = 1e-5
    for li, (w, b) in enumerate(p64):
        for arr, g in ((w, grads[li][0]), (b, grads[li][1])):
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + eps
                lp = reference_loss(p64, x, labels)
                arr[idx] = old - eps
                lm = reference_loss(p64, x, labels)
                arr[idx] = old
                assert g[idx] == pytest.approx((lp - lm) / (2 * eps), abs=2e-5)


def test_parallel_build_matches_serial():
    # big enough that the prange build is dispatched with 2 threads
    shape = NetShape((512, 600, 10), batch=512)
    x, labels = synthetic_task(512, 512, 10, seed=7)
    a, b = CpuNetwork(shape, seed=3, threads=1), CpuNetwork(shape, seed=3, threads=2)
    assert b.kernel_dispatch("bias_relu", 512 * 600) == "parallel"
    la = a.step(x, labels)
    with cpu_threads(2):
        lb = b.step(x, labels)
    assert la == pytest.approx(lb, rel=1e-4)
    for (wa, ba), (wb, bb) in zip(a.params, b.params):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ba, bb, rtol=1e-4, atol=1e-6)


def test_partial_batch_and_copy_in():
    shape = NetShape((8, 16, 3), batch=10)
    net = CpuNetwork(shape)
    x, labels = synthetic_task(7, 8, 3)
    assert np.isfinite(net.step(x, labels))  # 7 rows into a 10-row network
    t = time_steps(net, net.x, net.labels, steps=3, warmup=1)
    assert len(t) == 3 and all(v > 0 for v in t)


def _has_numba_cuda() -> bool:
    try:
        import numba_cuda  # noqa: F401

        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _has_numba_cuda(), reason="numba-cuda not installed (pip install numba-cuda)")
def test_gpu_backend_under_cuda_simulator():
    # the simulator must be switched on before numba.cuda is imported: a fresh interpreter
    code = textwrap.dedent("""
        import numpy as np
        from memprobe.train.network import GpuNetwork, CpuNetwork, NetShape, synthetic_task, time_steps
        shape = NetShape((6, 8, 3), batch=4)
        x, labels = synthetic_task(4, 6, 3, seed=1)
        g, c = GpuNetwork(shape, lr=0.1, seed=2), CpuNetwork(shape, lr=0.1, seed=2)
        lg = g.step(x, labels, want_loss=True)
        lc = c.step(x, labels)
        assert abs(lg - lc) < 1e-4 * max(1, abs(lc)), (lg, lc)
        for (wg, bg), (wc, bc) in zip(g.host_params(), c.params):
            np.testing.assert_allclose(wg, wc, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(bg, bc, rtol=1e-4, atol=1e-5)
        assert len(time_steps(g, x, labels, steps=2, warmup=0)) == 2
        from memprobe.train import sweep as S
        over = S.measure_gpu_overheads()
        rates, raw = S.measure_gpu_rates((1, 4), over)
        assert set(over) >= {"kernel", "gemm"} and "fwd" in rates and "sgd_update:kernel" in rates
        print("OK")
    """)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_cpu_threads_limits_blas_and_restores_it():
    """Inside the block NumPy's BLAS runs n threads (threadpoolctl sets them through the
    library's own runtime setter); after it, what it had before."""
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    np.ones((8, 8)) @ np.ones((8, 8))  # BLAS loaded
    before = blas_threads()
    with cpu_threads(1) as how:
        assert how == "threadpoolctl"
        assert blas_threads() and set(blas_threads()) == {1}
    assert blas_threads() == before
