"""A step predicted for a machine from its scan alone (memprobe/train/rates_from_scan.py,
memprobe/train/on_scan.py): captured ops find their class and ladder entry, a hand-built scan
with a rate table gives every op a bound, a scan without one gives a partial prediction that
names what to re-run, and a bad --on scan is one SpecError with exit code 2."""

import json
import math

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[torch]')")

from memprobe.result import ClassRate, ConvRate, GemmRate  # noqa: E402
from memprobe.train import capture as C  # noqa: E402
from memprobe.train import model as M  # noqa: E402
from memprobe.train import on_scan as O  # noqa: E402
from memprobe.train import rates_from_scan as RS  # noqa: E402
from memprobe.train.op_rates import op_key, replay_bytes, work_of  # noqa: E402
from memprobe.train.spec import Builder, SpecError  # noqa: E402

from test_scan_rates import hand_table, scan_with  # noqa: E402


def tiny_mlp(batch=8):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    x, y = torch.randn(batch, 32), torch.randint(0, 10, (batch,))
    return m, x, (lambda out: torch.nn.functional.cross_entropy(out, y))


def tiny_cnn(batch=2):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                            torch.nn.Linear(4 * 8 * 8, 10))
    x, y = torch.randn(batch, 3, 8, 8), torch.randint(0, 10, (batch,))
    return m, x, (lambda out: torch.nn.functional.cross_entropy(out, y))


MLP = Builder("tiny_mlp", tiny_mlp)


@pytest.fixture(scope="module")
def graph():
    return C.capture_step(lambda: tiny_mlp(8), optimizer="adamw", name="tiny_mlp", batch=8)


def test_each_captured_kernel_has_a_class(graph):
    classes = {op.packet: RS.op_class(op) for op in graph.kernels}
    assert classes["addmm"] == classes["mm"] == "gemm"
    assert classes["relu"] == "elementwise" and classes["threshold_backward"] == "elementwise"
    assert classes["_log_softmax"] == "softmax" and classes["nll_loss_forward"] == "reduction"
    assert {RS.op_class(o) for o in graph.kernels if o.phase == "optimizer" and o.category == "pointwise"} == {"update"}
    assert all(RS.op_class(o) is not None for o in graph.kernels if o.modelled)


def test_a_transcendental_activation_and_dropouts_mask_have_classes_of_their_own():
    def build():
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU(), torch.nn.Dropout(0.1),
                                torch.nn.Linear(16, 16), torch.nn.SiLU(), torch.nn.Tanh())
        return m, torch.randn(8, 16), (lambda out: out.square().mean())
    g = C.capture_step(build, optimizer="adamw")
    classes = {op.packet: RS.op_class(op) for op in g.kernels}
    assert classes["gelu"] == classes["gelu_backward"] == classes["silu"] == classes["tanh"] == "transcendental"
    assert classes["tanh_backward"] == "elementwise"  # a polynomial of the saved output: as fast as a multiply
    assert "random" in classes.values()  # dropout's mask
    # a table without them (a scan made before they were measured) names them: partial, not a guess
    t = hand_table()
    for k in ("transcendental", "random"):
        t.threads["threads_1"].classes.pop(k, None)
    _, missing = RS.step_inputs_from_scan(g, scan_with(t).devices["cpu"], "threads_1")
    assert any(m.startswith("transcendental: no rate") for m in missing)
    assert any(m.startswith("random: no rate") for m in missing)


def test_a_transcendental_operator_measured_on_its_own_reads_its_own_row():
    """A tanh reads the scan's tanh row where the scan measured one; a GELU (no row of its own)
    and a tanh from a scan without operator rows read the class's."""
    def build():
        m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU(), torch.nn.Tanh())
        return m, torch.randn(8, 16), (lambda out: out.square().mean())
    g = C.capture_step(build, optimizer="sgd")
    tanh = next(o for o in g.kernels if o.packet == "tanh")
    gelu = next(o for o in g.kernels if o.packet == "gelu")
    t = hand_table()
    tr = t.threads["threads_1"]
    tr.operators = {"tanh": [ClassRate(lv.level, lv.size_bytes, lv.elements_per_s / 10, lv.gbs / 10, 8)
                             for lv in tr.classes["transcendental"]]}
    c = M.ceilings_from_device(scan_with(t).devices["cpu"], "threads_1", 1, {})
    slow, _ = RS.op_rate_from_table(tanh, tr, c)
    same, _ = RS.op_rate_from_table(gelu, tr, c)
    tr.operators = {}
    fast, _ = RS.op_rate_from_table(tanh, tr, c)
    assert slow.call_s - slow.overhead_s == pytest.approx(10 * (fast.call_s - fast.overhead_s))
    assert (same.call_s - same.overhead_s) * 1e10 == pytest.approx(work_of(gelu))  # the class's L1 row


def test_gemm_dims_read_a_product_and_a_convolution_as_its_gemm():
    addmm = next(o for o in C.capture_step(lambda: tiny_mlp(8), optimizer="sgd").kernels if o.packet == "addmm")
    assert RS.gemm_dims(addmm) == (8, 64, 32)
    g = C.capture_step(lambda: tiny_cnn(2), optimizer="sgd")
    fwd = next(o for o in g.kernels if o.packet == "convolution")
    bwd = next(o for o in g.kernels if o.packet == "convolution_backward")
    assert RS.gemm_dims(fwd) == RS.gemm_dims(bwd) == (2 * 8 * 8, 4, 3 * 9)
    assert RS.op_class(fwd) == RS.op_class(bwd) == "conv"


def test_the_nearest_ladder_entry_is_nearest_in_log_m_n_k_and_of_the_same_dtype():
    ladder = [GemmRate(64, 1024, 1024, "float32", 80.0), GemmRate(512, 512, 512, "float32", 90.0),
              GemmRate(64, 64, 64, "float64", 5.0)]
    assert RS.nearest_entry(ladder, (32, 1024, 1024), "float32").m == 64
    assert RS.nearest_entry(ladder, (400, 600, 500), "float32").m == 512
    assert RS.nearest_entry(ladder, (64, 64, 64), "float64").gflops == 5.0
    assert RS.nearest_entry(ladder, (64, 64, 64), "bfloat16") is None
    convs = [ConvRate(8, 3, 4, 8, 3, 1, d, "float32", 128, 4, 27, g) for d, g in (("forward", 10.0), ("backward", 7.0))]
    assert RS.nearest_entry(convs, (128, 4, 27), "float32", "backward").gflops == 7.0


def test_a_product_above_the_scans_fma_ceiling_is_never_an_input():
    ladder = [GemmRate(64, 1024, 1024, "float32", 500.0), GemmRate(512, 512, 512, "float32", 90.0)]
    assert [e.gflops for e in RS.plausible(ladder, 100.0)] == [90.0]
    assert RS.plausible(ladder, None) == ladder
    from memprobe.result import ComputeCeilings

    s = scan_with(hand_table())
    s.devices["cpu"].compute = ComputeCeilings(fma={"float32": {"threads_1": 100.0, "threads_all": 200.0}})
    assert RS.fma_peak_gflops(s.devices["cpu"], "threads_1") == 100.0
    g = C.capture_step(lambda: tiny_mlp(8), optimizer="sgd")
    mm = next(o for o in g.kernels if o.packet == "addmm")
    tr = s.devices["cpu"].rates.threads["threads_1"]
    tr.gemm = ladder
    c = M.ceilings_from_device(s.devices["cpu"], "threads_1", 1, {})
    r, _ = RS.op_rate_from_table(mm, tr, c, 100.0)
    assert r.call_s == pytest.approx(2e-6 + mm.flops / 90e9)
    tr.gemm = ladder[:1]
    r, why = RS.op_rate_from_table(mm, tr, c, 100.0)
    assert r is None and why == "gemm float32: no rate in the scan's table"


def test_step_inputs_come_from_the_table_alone(graph):
    dev = scan_with(hand_table()).devices["cpu"]
    inputs, missing = RS.step_inputs_from_scan(graph, dev, "threads_1")
    assert missing == []
    assert all(op_key(o) in inputs.rates for o in graph.kernels)
    m = inputs.machine
    assert m.threads == 1 and m.backward_call_s == 1e-5 and m.update_call_s == (1e-5, 2e-5)
    assert inputs.fault_bytes is None  # no allocator replay for a machine we do not have
    mm = next(o for o in graph.kernels if o.packet == "addmm")
    r = inputs.rates[op_key(mm)]
    entry = RS.nearest_entry(dev.rates.threads["threads_1"].gemm, RS.gemm_dims(mm), "float32")
    assert r.rate == pytest.approx(entry.gflops * 1e9) and r.overhead_s == 2e-6
    relu = next(o for o in graph.kernels if o.packet == "relu")
    rr = inputs.rates[op_key(relu)]
    assert replay_bytes(relu) <= 32 << 10  # its footprint sits in L1: the L1 row's GB/s over its own bytes
    want = 120.0 * 1e9 * work_of(relu) / RS.stream_bytes(relu)
    # its call: the class's overhead plus its work at that rate (OpRate.rate then applies the
    # replay's rule, a tenth of the call at least, as for a measured op)
    assert rr.call_s == pytest.approx(2e-6 + work_of(relu) / want) and rr.overhead_s == 2e-6
    soft = next(o for o in graph.kernels if o.packet == "_log_softmax")
    rs = inputs.rates[op_key(soft)]  # row-wise: the L1 row's elements/s
    assert rs.call_s == pytest.approx(2e-6 + work_of(soft) / 1e10)


def test_a_prediction_from_a_hand_built_scan_gives_every_op_a_bound():
    r = O.predict_on(MLP, scan_with(hand_table()), batch=8, threads=1, optimizer="adamw")
    assert isinstance(r, O.ScanPredictResult)
    assert not r.partial and r.missing == [] and r.kernels_predicted == r.kernels
    assert r.predicted_s > 0 and r.coverage == 1.0 and r.measured_s is None
    assert r.ops and all(g["bound"] in ("compute", "overhead", "L1", "L2", "memory") for g in r.ops)
    assert r.machine.startswith("there") and r.library == "torch 2.13.0"
    json.dumps(r.to_dict())  # JSON-able


def test_threads_all_is_the_scan_machines_count_not_this_ones():
    t = hand_table(threads_all=48)
    r = O.predict_on(MLP, scan_with(t), batch=8, threads="all", optimizer="sgd")
    assert r.n_threads == 48 and r.threads == "threads_all"
    with pytest.raises(SpecError):
        O.predict_on(MLP, scan_with(t), batch=8, threads=3)


def test_a_scan_without_a_rate_table_gives_a_partial_prediction_naming_what_to_rerun():
    r = O.predict_on(MLP, scan_with(None), batch=8, threads=1, optimizer="sgd")
    assert r.partial and r.kernels_predicted == 0 and r.bound == "none"
    assert len(r.missing) == 1 and "no rate table" in r.missing[0] and "re-run `memprobe scan`" in r.missing[0]
    assert r.unmodelled  # every kernel named, none counted as zero time


def test_a_cpu_scan_made_without_pytorch_is_partial_and_says_so():
    from memprobe.scan.rates import NO_TORCH

    t = hand_table()
    for tr in t.threads.values():
        tr.classes, tr.conv = {}, []
        tr.call_overhead_s = {"gemm": 1e-6, "bmm": 1e-6}
        tr.backward_call_s = tr.fault_s_per_byte = None
        tr.update_call_s = {}
    t.library, t.absent = "numpy/openblas", [NO_TORCH]
    r = O.predict_on(MLP, scan_with(t), batch=8, threads=1, optimizer="sgd")
    assert r.partial and r.missing[0] == NO_TORCH
    assert any(m.startswith("elementwise: no rate in the scan's table") for m in r.missing)
    assert not any("call overhead" in m for m in r.missing if m.startswith(("gemm", "bmm")))
    assert 0 < r.kernels_predicted < r.kernels  # the GEMMs, from NumPy's ladder


def test_an_op_class_missing_from_the_table_is_named_with_its_kernels(graph):
    t = hand_table()
    del t.threads["threads_1"].classes["softmax"]
    inputs, missing = RS.step_inputs_from_scan(graph, scan_with(t).devices["cpu"], "threads_1")
    assert missing == ["softmax: no rate in the scan's table (2 kernels)"]  # _log_softmax and its backward
    t2 = hand_table()
    t2.threads["threads_1"].classes["elementwise"] = [ClassRate("memory", 64 << 20, 1e9, 12.0, 12.0)]
    _, missing2 = RS.step_inputs_from_scan(graph, scan_with(t2).devices["cpu"], "threads_1")
    assert missing2 and all(m.startswith("elementwise at L1: no rate") for m in missing2)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,match", [
    ("{not json", "not valid JSON"),
    ('{"schema": "memprobe/3", "host": "x"}', "newer memprobe"),
    ('{"schema": "memprobe/2", "host": 5}', "malformed"),
])
def test_a_bad_scan_is_one_spec_error_with_exit_code_2(tmp_path, text, match):
    with pytest.raises(SpecError, match=match) as e:
        O.predict_on(MLP, write(tmp_path, "scan.json", text), batch=8)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_a_scan_without_levels_is_one_spec_error_with_exit_code_2(tmp_path):
    s = scan_with(hand_table())
    s.devices["cpu"].levels = []
    with pytest.raises(SpecError, match="no measured levels") as e:
        O.predict_on(MLP, write(tmp_path, "scan.json", s.to_json()), batch=8)
    assert e.value.exit_code == 2
    with pytest.raises(SpecError, match="no GPU device"):
        O.predict_on(MLP, scan_with(hand_table()), batch=8, device="gpu")


def test_compare_machines_lists_the_step_then_what_changes_largest_first():
    g = C.capture_step(lambda: tiny_mlp(8), optimizer="sgd", name="tiny_mlp", batch=8)
    here = O.predict_on(MLP, scan_with(hand_table()), batch=8, optimizer="sgd", graph=g)
    slow = hand_table()
    for rows in slow.threads["threads_1"].classes.values():
        for row in rows:
            row.gbs, row.elements_per_s = row.gbs / 1000, row.elements_per_s / 1000
    there_scan = scan_with(slow)
    for lv in there_scan.devices["cpu"].levels:  # a machine whose L1 is tiny: everything from L2 or memory
        if lv.name == "L1":
            lv.size_bytes = 64
    there = O.predict_on(MLP, there_scan, batch=8, optimizer="sgd", graph=g)
    rows = O.compare_machines(here, there)
    step = rows[0]
    assert step["op"] == "step" and step["ratio"] == pytest.approx(there.predicted_s / here.predicted_s)
    assert step["ratio"] > 1 and not step["partial"]
    changed = rows[1:]
    assert changed and all(r["bound_here"] != r["bound_there"] or r["level_here"] != r["level_there"]
                           for r in changed)
    deltas = [abs(r["delta_s"]) for r in changed]
    assert deltas == sorted(deltas, reverse=True)
    assert O.compare_machines(here, here)[1:] == []


def test_record_line_holds_what_a_re_prediction_needs():
    r = O.predict_on(MLP, scan_with(hand_table()), batch=8, optimizer="sgd")
    r.measured_s = 1e-3
    line = O.record_line(r, spec="tests/x.py:tiny_mlp")
    assert {"model", "spec", "batch", "threads", "optimizer", "measured_s", "torch"} <= set(line)
    assert line["spec"] == "tests/x.py:tiny_mlp" and line["batch"] == 8 and line["torch"] == torch.__version__
    assert math.isfinite(line["predicted_s"]) and json.loads(json.dumps(line)) == line


def test_append_record_writes_one_line_per_measured_step(tmp_path):
    r = O.predict_on(MLP, scan_with(hand_table()), batch=8, optimizer="sgd")
    with pytest.raises(SpecError, match="--measure"):
        O.append_record(tmp_path / "p.jsonl", r)
    r.measured_s = 2e-3
    O.append_record(tmp_path / "m" / "p.jsonl", r, spec="x.py:tiny_mlp")
    O.append_record(tmp_path / "m" / "p.jsonl", r, spec="x.py:tiny_mlp")
    lines = (tmp_path / "m" / "p.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["measured_s"] == 2e-3
    (tmp_path / "afile").write_text("x")  # a folder that is a file (root ignores permissions)
    with pytest.raises(SpecError, match="cannot write") as e:
        O.append_record(tmp_path / "afile" / "p.jsonl", r)
    assert e.value.exit_code == 2


def test_compare_scans_captures_once_and_predicts_from_each(tmp_path, monkeypatch):
    calls = []
    real = O.capture_spec
    monkeypatch.setattr(O, "capture_spec", lambda *a, **k: calls.append(1) or real(*a, **k))
    tb = hand_table(threads_all=4)
    tb.threads["threads_all"].call_overhead_s = {k: 1e-5 for k in tb.threads["threads_all"].call_overhead_s}
    b = scan_with(tb)  # calls five times as dear: this tiny step is mostly calls
    out = O.compare_scans(MLP, scan_with(hand_table()), write(tmp_path, "b.json", b.to_json()), batch=8,
                          threads="all", optimizer="sgd")
    assert calls == [1]
    assert out["a"].n_threads == 2 and out["b"].n_threads == 4 and out["a"].kernels == out["b"].kernels
    step = out["rows"][0]
    assert step["op"] == "step" and step["ratio"] == pytest.approx(out["b"].predicted_s / out["a"].predicted_s)
    assert step["ratio"] > 2
    with pytest.raises(SpecError) as e:
        O.compare_scans(MLP, scan_with(hand_table()), write(tmp_path, "bad.json", "[]"), batch=8)
    assert e.value.exit_code == 2


def tiny_attention(batch=2):
    torch.manual_seed(0)

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(32, 96)

        def forward(self, x):
            q, k, v = self.qkv(x).view(x.shape[0], 16, 3, 2, 16).permute(2, 0, 3, 1, 4)
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    x = torch.randn(batch, 16, 32)
    return Attn(), x, (lambda out: out.square().mean())


def test_fused_attention_reads_the_attention_ladder_by_direction_and_causality():
    g = C.capture_step(lambda: tiny_attention(2), optimizer="sgd")
    att = [o for o in g.kernels if RS.op_class(o) == "attention"]
    assert len(att) == 2
    assert [RS.attention_dims(o) for o in att] == [(4, 16, 16, True)] * 2
    dev = scan_with(hand_table()).devices["cpu"]
    inputs, missing = RS.step_inputs_from_scan(g, dev, "threads_1")
    assert missing == []
    for o in att:
        assert inputs.rates[op_key(o)].call_s == pytest.approx(2e-6 + o.flops / 30e9)
    t = hand_table()
    t.threads["threads_1"].attention = [a for a in t.threads["threads_1"].attention if not a.causal]
    _, missing = RS.step_inputs_from_scan(g, scan_with(t).devices["cpu"], "threads_1")
    assert missing == ["attention forward causal float32: no rate in the scan's table (1 kernel)",
                       "attention backward causal float32: no rate in the scan's table (1 kernel)"]


def test_an_all_thread_rate_below_one_threads_reads_one_threads_and_says_so():
    """scan_rates.json's rates stage ran beside busy neighbours: its all-thread figures sit far
    below one thread's. The prediction reads one thread's work time for them (all threads do
    at least that) and names how many ops it did that for; a quiet table's would need none."""
    from pathlib import Path

    from memprobe.train import on_scan

    scan = Path(__file__).parent / "data" / "scan_rates.json"
    one = on_scan.predict_on("mlp", scan, threads=1)
    both = on_scan.predict_on("mlp", scan, threads="all")
    assert both.notes and "read one thread's rate" in both.notes[0] and not one.notes
    assert both.predicted_s <= 1.25 * one.predicted_s
