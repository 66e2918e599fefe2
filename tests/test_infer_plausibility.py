"""The plausibility checks (infer/plausibility.py): each rule flags what breaks it, and a flagged
figure is neither a roof nor a training-model input."""

import pytest

from memprobe.infer.plausibility import check_device
from memprobe.result import Code, ComputeCeilings, DeviceResult, Level, TheoreticalPeak


def bw(one, allt):
    return {"threads_1": one, "threads_all": allt}


def device():
    return DeviceResult("cpu", "x", levels=[
        Level("L1", 32 << 10, 1.0, 3.0, {"read": bw(100.0, 190.0), "copy": bw(80.0, 150.0)}),
        Level("L2", 1 << 20, 4.0, 12.0, {"read": bw(60.0, 110.0), "copy": bw(50.0, 90.0)}),
        Level("memory", None, 90.0, 270.0, {"read": bw(20.0, 30.0), "copy": bw(15.0, 25.0),
                                            "copy_nt": bw(18.0, 32.0)})])


def test_a_plausible_device_has_no_flags():
    assert check_device(device()) == 0


def test_streaming_store_above_the_rfo_gain_is_flagged():
    dev = device()
    dev.levels[-1].bandwidth_gbs["copy_nt"]["threads_all"] = 70.0  # 2.8x the cached copy
    assert check_device(dev) == 1
    f = dev.levels[-1].flags[0]
    assert f.code == Code.STREAMING_ABOVE_RFO and f.figure == "bandwidth/copy_nt/threads_all"


def test_all_threads_below_one_thread_is_contention():
    dev = device()
    dev.levels[0].bandwidth_gbs["read"]["threads_all"] = 2.3
    check_device(dev)
    assert dev.levels[0].flagged("bandwidth/read/threads_all").code == Code.ALL_BELOW_ONE


def test_a_farther_level_faster_than_a_nearer_one_and_a_latency_out_of_order():
    dev = device()
    dev.levels[1].bandwidth_gbs["read"] = bw(150.0, 215.0)
    dev.levels[1].latency_ns = 0.5
    check_device(dev)
    codes = {f.code for f in dev.levels[1].flags}
    assert codes == {Code.FARTHER_FASTER, Code.LATENCY_ORDER}


def test_fma_above_the_isa_peak_is_flagged():
    dev = device()
    dev.compute = ComputeCeilings(fma={"float64": {"threads_1": 40.0, "threads_all": 200.0}},
                                  theoretical=TheoreticalPeak(3.0, 2, {"float64": 16}, {"float64": 96.0}))
    check_device(dev)
    assert [f.figure for f in dev.compute.flags] == ["fma/float64/threads_all"]


def test_a_flagged_figure_is_no_roof_and_no_model_input():
    from memprobe.report.figures import compute_ceilings, level_bandwidth
    from memprobe.train import model as M

    dev = device()
    dev.levels[-1].bandwidth_gbs["copy_nt"]["threads_all"] = 70.0
    dev.levels[0].bandwidth_gbs["read"]["threads_all"] = 2.3
    check_device(dev)
    assert level_bandwidth(dev.levels[-1])[0] == 30.0  # the read roof, not the flagged 70
    dev.compute = ComputeCeilings(fma={"float64": {"threads_all": 500.0}},
                                  theoretical=TheoreticalPeak(3.0, 2, {"float64": 16}, {"float64": 96.0}))
    check_device(dev)
    assert not [c for c in compute_ceilings(dev) if c[2] == "fma"]
    for lv in dev.levels:
        for k in ("write", "triad"):
            lv.bandwidth_gbs[k] = bw(50.0, 60.0)
    # the model never reads the flagged 2.3 GB/s: all threads move at least one thread's 100
    c = M.ceilings_from_device(dev, "threads_all", 2, {})
    assert c.levels[0].bandwidth_bps["read"] == 100e9
