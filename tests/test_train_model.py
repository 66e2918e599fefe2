"""The model's formulas against counted operations, and its arithmetic against known ceilings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from memprobe.result import DeviceResult, Level, ModelInputs
from memprobe.train import model as M
from memprobe.train.network import ITEM_BYTES, NetShape


class CountingArray:
    """A tiny array that counts distinct elements read and written (as minimum traffic)."""

    def __init__(self, name, shape):
        self.name, self.data = name, np.zeros(shape)
        self.reads, self.writes = set(), set()

    def __getitem__(self, idx):
        self.reads.add(idx)
        return self.data[idx]

    def __setitem__(self, idx, v):
        self.writes.add(idx)
        self.data[idx] = v


def counted_gemm(m, k, n, kind):
    """A naive triple loop over counting arrays: returns (flops, bytes) as counted."""
    flops = 0
    if kind == "bwd_weight":  # C (k x n) = A^T (k x m) @ B (m x n)
        a, b, c = CountingArray("a", (m, k)), CountingArray("b", (m, n)), CountingArray("c", (k, n))
        for i, j in itertools.product(range(k), range(n)):
            s = 0.0
            for p in range(m):
                s += a[p, i] * b[p, j]
                flops += 2
            c[i, j] = s
    else:  # C (m x n) = A (m x k) @ W (k x n) (W^T for bwd_data: same counts)
        a, b, c = CountingArray("a", (m, k)), CountingArray("w", (k, n)), CountingArray("c", (m, n))
        for i, j in itertools.product(range(m), range(n)):
            s = 0.0
            for p in range(k):
                s += a[i, p] * b[p, j]
                flops += 2
            c[i, j] = s
    elems = len(a.reads) + len(b.reads) + len(c.writes)
    return flops, elems * ITEM_BYTES


@pytest.mark.parametrize("batch,d_in,d_out", [(1, 3, 4), (2, 5, 3), (4, 4, 4)])
def test_gemm_formulas_match_counted_operations(batch, d_in, d_out):
    ops = {o.name: o for o in M.step_ops(NetShape((d_in, d_out, d_out), batch))}
    # layer 1 (index 1) has d_out x d_out weights; layer 0 has d_in x d_out
    f, b = counted_gemm(batch, d_in, d_out, "fwd")
    assert (ops["fwd_gemm0"].flops, ops["fwd_gemm0"].bytes) == (f, b)
    f, b = counted_gemm(batch, d_in, d_out, "bwd_weight")
    assert (ops["bwd_weight_gemm0"].flops, ops["bwd_weight_gemm0"].bytes) == (f, b)
    f, b = counted_gemm(batch, d_out, d_out, "bwd_data")
    assert (ops["bwd_data_gemm1"].flops, ops["bwd_data_gemm1"].bytes) == (f, b)


def test_elementwise_and_update_formulas_match_counts():
    B, d = 3, 5
    ops = {o.name: o for o in M.step_ops(NetShape((d, d, d), B))}
    # bias + ReLU in place: read z and b, write z; an add and a max per element
    assert ops["bias_relu0"].bytes == (B * d + d + B * d) * ITEM_BYTES
    assert ops["bias_relu0"].flops == 2 * B * d
    # SGD on layer 0: read w, g, b, gb; write w, b; a multiply and a subtract per parameter
    n = d * d + d
    assert ops["sgd_update0"].bytes == (2 * n + n) * ITEM_BYTES
    assert ops["sgd_update0"].flops == 2 * n
    assert ops["sgd_update0"].stream_kernel == "triad"  # reads 2, writes 1: exactly triad's mix
    assert ops["bias_relu0"].stream_kernel == "copy"
    # the step issues 3L - 1 GEMMs and 3L elementwise/update calls
    kinds = [o.kind for o in M.step_ops(NetShape((d,) * 4, B))]
    assert kinds.count("gemm") == 3 * 3 - 1 and len(kinds) - kinds.count("gemm") == 3 * 3


def test_working_set_counts_every_buffer():
    B, W, L = 4, 8, 2
    ws = M.working_set_bytes(NetShape.square(W, L, B))
    params = L * (W * W + W)
    expected = (2 * params + 2 * L * B * W + B * W) * ITEM_BYTES + B * 4  # +grads, acts, deltas, x, labels
    assert ws == expected


def test_reuse_footprints_follow_lru_distance():
    shape = NetShape.square(16, 2, 4)
    ops = M.step_ops(shape)
    buf = M.step_buffers(shape)
    feet = M.reuse_footprints(ops)
    k = next(i for i, o in enumerate(ops) if o.name == "fwd_gemm0")
    # W0 was last touched by the previous step's update of layer 0; since then: update 1, this GEMM
    between = {"W0", "gW0", "b0", "gb0", "W1", "gW1", "b1", "gb1", "x", "A0"}
    assert feet[k]["W0"] == sum(buf[b] for b in between)
    # gW0 comes back only after nearly the whole step
    k = next(i for i, o in enumerate(ops) if o.name == "bwd_weight_gemm0")
    assert feet[k]["gW0"] > 0.8 * M.working_set_bytes(shape)
    k = next(i for i, o in enumerate(ops) if o.name == "bias_relu0")
    assert feet[k]["A0"] < M.working_set_bytes(shape) / 2  # just written by the GEMM before it


def _synthetic_device(bw_gbs):
    lv = lambda name, size, bw: Level(name, size, 1.0, 4.0,
                                      {k: {"threads_1": bw, "threads_all": bw} for k in ("read", "write", "copy", "triad")})
    return DeviceResult("cpu", "synthetic", levels=[lv("L1", 1 << 40, bw_gbs), lv("memory", None, bw_gbs / 10)])


def test_model_predicts_known_synthetic_ceilings_exactly():
    # one level holds everything: bandwidth 10 GB/s, every rate 1 GFLOP/s, 1 us per call
    dev = _synthetic_device(10.0)
    rates = {k: {(0, 0): 1e9} for k in (*M.GEMM_KINDS, "bias_relu", "softmax_xent", "bias_grad",
                                         "relu_bwd_bias_grad", "sgd_update")}
    ceil = M.ceilings_from_device(dev, "threads_1", 1, rates, ModelInputs(1, {"gemm": 1e-6, "serial": 1e-6, "parallel": 1e-6}))
    shape = NetShape.square(32, 2, 16)
    pred = M.predict_step(shape, ceil, M.cpu_dispatch(1, 1 << 30))
    ops = M.step_ops(shape)
    expect = sum(max(o.flops / 1e9, o.bytes / 10e9) for o in ops) + len(ops) * 1e-6
    assert pred.predicted_s == pytest.approx(expect, rel=1e-12)
    F, Bt = sum(o.flops for o in ops), sum(o.bytes for o in ops)
    assert pred.predicted_max_s == pytest.approx(max(F / 1e9, Bt / 10e9), rel=1e-12)
    assert pred.predicted_sum_s == pytest.approx(F / 1e9 + Bt / 10e9, rel=1e-12)
    assert pred.flops == F and pred.bytes == Bt


def test_gemms_pay_for_what_one_core_wrote_on_several_threads():
    """On two threads a GEMM pays, beyond its rate, half the bytes a serial kernel (or the
    batch copy) last wrote of what it reads, at the measured seconds per byte; one thread and
    operands last written by a parallel kernel pay nothing."""
    dev = _synthetic_device(10.0)
    rates = {k: {(0, 0): 1e9} for k in (*M.GEMM_KINDS, "bias_relu", "softmax_xent", "bias_grad",
                                         "relu_bwd_bias_grad", "sgd_update")}
    over = {"gemm": 1e-6, "serial": 1e-6, "parallel": 1e-6, "copyto": 1e-6}
    shape = NetShape.square(32, 2, 16)
    ops = M.step_ops(shape, True)
    serial = M.cpu_dispatch(2, 1 << 30)  # every elementwise kernel serial
    written = M.one_core_writes(ops, serial)
    by_name = dict(zip([o.name for o in ops], written))
    # the first GEMM reads the batch (copied) and W0 (SGD's serial update): both one core's
    assert set(by_name["fwd_gemm0"]) == {"x", "W0"}
    # the weight-gradient GEMM reads dZ1 from the serial softmax (a serial bias gradient read it
    # in between, on the same core); the data-gradient GEMM after it finds dZ1 and W1 spread
    assert "dZ1" in by_name["bwd_weight_gemm1"]
    assert not by_name["bwd_data_gemm1"]
    base = M.predict_step(shape, M.ceilings_from_device(dev, "threads_all", 2, rates, ModelInputs(2, over)),
                          serial, True)
    paid = M.predict_step(shape, M.ceilings_from_device(dev, "threads_all", 2, rates,
                                                        ModelInputs(2, over, cross_core_s_per_byte=1e-9)), serial, True)
    want = sum(sum(w.values()) for o, w in zip(ops, written) if o.kind == "gemm") * 0.5 * 1e-9
    assert paid.predicted_s - base.predicted_s == pytest.approx(want, rel=1e-9) and want > 0
    one = M.predict_step(shape, M.ceilings_from_device(dev, "threads_1", 1, rates,
                                                       ModelInputs(1, over, cross_core_s_per_byte=1e-9)), serial, True)
    assert all(p.excess_s == 0 for p in one.ops)
    parallel = M.cpu_dispatch(2, 1)  # every elementwise kernel parallel: only the copy is one core's
    assert all(set(w) <= {"x", "labels"} for w in M.one_core_writes(ops, parallel))


def test_level_choice_follows_capacity():
    lv = lambda name, size, bw: Level(name, size, 1.0, 4.0,
                                      {k: {"threads_1": bw, "threads_all": bw} for k in ("read", "write", "copy", "triad")})
    dev = DeviceResult("cpu", "s", levels=[lv("L1", 32 << 10, 100.0), lv("memory", None, 10.0)])
    rates = {k: {(0, 0): 1e15} for k in (*M.GEMM_KINDS, "bias_relu", "softmax_xent", "bias_grad",
                                          "relu_bwd_bias_grad", "sgd_update")}
    ceil = M.ceilings_from_device(dev, "threads_1", 1, rates, ModelInputs(1, {"gemm": 0.0, "serial": 0.0, "parallel": 0.0}))
    small = M.predict_step(NetShape.square(16, 2, 1), ceil, M.cpu_dispatch(1, 1 << 30))
    big = M.predict_step(NetShape.square(512, 2, 1), ceil, M.cpu_dispatch(1, 1 << 30))
    assert all(set(o.levels.values()) == {"L1"} for o in small.ops)
    assert {"memory"} <= {v for o in big.ops for v in o.levels.values()}
    assert big.bound == "memory" and small.bound == "memory"


def test_missing_bandwidth_is_a_clear_error_not_a_number():
    dev = DeviceResult("cpu", "s", levels=[Level("L1", 1 << 15, 1.0, 4.0, {}), Level("memory", None, 90.0, 300.0, {})])
    with pytest.raises(M.MissingCeiling, match="L1: no measured read bandwidth"):
        M.ceilings_from_device(dev, "threads_1", 1, {})


def test_private_levels_scale_with_threads():
    lv = lambda name, size: Level(name, size, 1.0, 4.0,
                                  {k: {"threads_1": 1.0, "threads_all": 2.0} for k in ("read", "write", "copy", "triad")})
    dev = DeviceResult("cpu", "s", levels=[lv("L1", 100), lv("L2", 1000), lv("L3", 10000), lv("memory", None)])
    c = M.ceilings_from_device(dev, "threads_all", 2, {})
    assert [lvl.capacity_bytes for lvl in c.levels] == [200, 2000, 10000, None]


def test_per_kernel_overhead_and_row_width_rates():
    # the softmax's own call overhead and its short-row rate are used where measured; the other
    # kernels fall back to their dispatch class's overhead and their one rate
    dev = _synthetic_device(1e6)  # bandwidth out of the way
    rates = {k: {(0, 0): 1e9} for k in (*M.GEMM_KINDS, "bias_relu", "bias_grad", "relu_bwd_bias_grad", "sgd_update")}
    rates["softmax_xent"] = {(0, 8): 1e8, (0, 512): 1e9}
    over = {"gemm": 1e-6, "serial": 1e-6, "parallel": 1e-6, "serial:softmax_xent": 7e-6}
    ceil = M.ceilings_from_device(dev, "threads_1", 1, rates, ModelInputs(1, over))
    for width, want_rate in ((8, 1e8), (512, 1e9)):
        pred = M.predict_step(NetShape.square(width, 2, 4), ceil, M.cpu_dispatch(1, 1 << 30))
        soft = next(o for o in pred.ops if o.name.startswith("softmax"))
        assert soft.overhead_s == 7e-6
        assert soft.compute_s == pytest.approx(soft.flops / want_rate)
        assert all(o.overhead_s == 1e-6 for o in pred.ops if not o.name.startswith("softmax"))


def test_elementwise_ops_carry_their_row_length():
    ops = {o.name: o for o in M.step_ops(NetShape((20, 30, 10), 4))}
    assert ops["bias_relu0"].width == 30 and ops["softmax_xent1"].width == 10
    assert ops["bias_grad1"].width == 10 and ops["relu_bwd0"].width == 30
    assert ops["sgd_update0"].width == 0


def test_a_miss_gets_its_likely_cause():
    from memprobe.train.model import miss_cause

    assert miss_cause(0.2, "memory", 0.0, 1.0, None, 25.0) is None  # within 25 %
    assert miss_cause(None, "memory", 0.0, 1.0, None, 25.0) is None
    busy = miss_cause(-0.6, "memory", 0.0, 1.0, 80.0, 25.0)
    over = miss_cause(-0.6, "overhead", 0.9, 1.0, 5.0, 25.0)
    model = miss_cause(0.4, "compute", 0.1, 1.0, 5.0, 25.0)
    assert busy and over and model and len({busy, over, model}) == 3
    assert miss_cause(-0.6, "memory", 0.6, 1.0, None, 25.0) == over  # overheads half the step


def test_a_flagged_bandwidth_is_replaced_by_the_bound_its_rule_gives(small_cpu_device):
    """The study keeps running on a scan with flagged figures: a farther level faster than the
    nearer one reads the nearer one's figure, all threads below one thread read one thread's;
    each replacement is named. The honest scan (no flag) reads its own figures unchanged."""
    from memprobe.infer.plausibility import check_device

    dev = small_cpu_device
    assert check_device(dev) == 0
    honest, notes = M.level_bandwidths(dev, "threads_all")
    assert notes == [] and honest[2]["write"] == 30e9
    mem, l2 = dev.levels[2], dev.levels[1]
    mem.bandwidth_gbs["write"]["threads_all"] = 9.0  # below one thread's 15: a busy neighbour
    l2.bandwidth_gbs["read"].update(threads_1=400.0, threads_all=600.0)  # above L1's 300: breaks physics
    assert check_device(dev) == 2
    bw_all, notes_all = M.level_bandwidths(dev, "threads_all")
    assert bw_all[2]["write"] == 15e9 and len(notes_all) == 1 and "one thread's" in notes_all[0]
    bw_1, notes_1 = M.level_bandwidths(dev, "threads_1")
    assert bw_1[1]["read"] == 300e9 and "nearer L1's" in notes_1[0]
    c = M.ceilings_from_device(dev, "threads_all", 2, {})
    assert c.levels[2].bandwidth_bps["write"] == 15e9


def test_a_flag_with_no_bound_still_refuses(small_cpu_device):
    from memprobe.infer.plausibility import check_device

    dev = small_cpu_device
    dev.levels[0].bandwidth_gbs["copy"]["threads_all"] = 100.0
    dev.levels[0].bandwidth_gbs["copy"]["threads_1"] = 200.0
    check_device(dev)
    dev.levels[0].flags[0] = type(dev.levels[0].flags[0])("implausible", "bandwidth/copy/threads_all", 100.0, "x")
    with pytest.raises(M.MissingCeiling):
        M.ceilings_from_device(dev, "threads_all", 2, {})
