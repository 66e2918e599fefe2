"""One training step captured from PyTorch's dispatcher (memprobe/train/capture.py): the ops
PyTorch runs, the storages they read and write by identity, their FLOPs, and what is left
unmodelled. Tiny models only."""

from collections import Counter

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[torch]')")

from memprobe.train import capture as C  # noqa: E402


def _mlp(batch=5, d_in=8, hidden=16, classes=4, seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))
    x = torch.randn(batch, d_in)
    y = torch.randint(0, classes, (batch,))
    return m, x, (lambda out: torch.nn.functional.cross_entropy(out, y))


def _profiled_step(optimizer):
    """The aten operators of a real step of the same MLP: (all of them, the optimizer's)."""
    from torch.profiler import ProfilerActivity, profile

    m, x, loss_fn = _mlp()
    opt = C.make_optimizer(optimizer, m.parameters())
    for _ in range(2):
        C.run_step(m, x, loss_fn, opt)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        C.run_step(m, x, loss_fn, opt)
    ev = prof.events()
    every = Counter(e.name for e in ev)
    in_step = Counter(e.name for e in ev
                      if e.cpu_parent is not None and e.cpu_parent.name.startswith("Optimizer.step#"))
    return every, in_step


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_mlps_graph_has_the_gemms_and_optimizer_ops_pytorch_runs(optimizer):
    g = C.capture_step(_mlp, optimizer=optimizer)
    every, in_step = _profiled_step(optimizer)
    got = g.counts()
    assert got["aten.addmm.default"] == every["aten::addmm"] == 2
    assert got["aten.mm.default"] == every["aten::mm"] == 3  # no input gradient for the first layer
    # the optimizer: the profiler's operators under Optimizer.step, item() as the dispatcher sees it
    want = Counter({k.replace("aten::item", "aten::_local_scalar_dense"): v for k, v in in_step.items()})
    captured = Counter("aten::" + o.packet for o in g.ops if o.phase == "optimizer" and o.kernel)
    assert captured == want
    assert {o.phase for o in g.ops} <= set(C.PHASES)


def test_a_parameter_read_in_forward_and_written_by_the_optimizer_keeps_its_id():
    g = C.capture_step(_mlp, optimizer="sgd")
    first = next(o for o in g.ops if o.name == "aten.addmm.default")
    w_view = next(o for o in g.ops if o.name == "aten.t.default")  # the weight's transpose: a view
    assert not w_view.kernel and w_view.writes == ()
    wid = w_view.reads[0]
    assert g.role(wid) == "param" and wid in first.reads
    updates = [o for o in g.ops if o.phase == "optimizer" and wid in o.writes]
    assert len(updates) == 1 and updates[0].packet == "add_"  # w += -lr * momentum buffer
    # the gradient the optimizer reads was written by a backward GEMM, the same storage
    grads = {sid for o in g.ops if o.phase == "optimizer" for sid in o.reads if g.role(sid) == "grad"}
    written_in_backward = {sid for o in g.ops if o.phase == "backward" for sid in o.writes}
    assert grads and grads <= written_in_backward
    # the momentum buffers are states, updated in place by the optimizer
    states = {sid for sid, s in g.storages.items() if s.role == "state"}
    assert len(states) == 4
    assert states <= {sid for o in g.ops if o.phase == "optimizer" for sid in set(o.reads) & set(o.writes)}


def test_a_linears_flops_are_2mnk_per_gemm():
    B, d_in, d_out = 6, 10, 7
    g = C.capture_step(lambda: _mlp(B, d_in, d_out, 3), optimizer="sgd")
    fwd = [o for o in g.ops if o.category == "gemm" and o.phase == "forward"]
    assert fwd[0].flops == 2 * B * d_in * d_out
    bwd = [o for o in g.ops if o.category == "gemm" and o.phase == "backward"]
    # second layer: input gradient and weight gradient; first layer: weight gradient only
    assert sorted(o.flops for o in bwd) == sorted([2 * B * d_out * 3, 2 * B * d_out * 3, 2 * B * d_in * d_out])


def test_elementwise_ops_and_reductions_are_counted_by_elements_and_an_unknown_op_is_unmodelled():
    @torch.library.custom_op("memprobe_test::mystery", mutates_args=())
    def mystery(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @mystery.register_fake
    def _(x):
        return torch.empty_like(x)

    def build():
        m, x, loss_fn = _mlp()
        return m, x, (lambda out: loss_fn(out) + torch.ops.memprobe_test.mystery(x).sum())

    g = C.capture_step(build, optimizer="sgd")
    relu = next(o for o in g.ops if o.packet == "relu")
    assert relu.category == "pointwise" and relu.flops == relu.elements == 5 * 16
    s = next(o for o in g.ops if o.packet == "sum" and o.phase == "backward")
    assert s.category == "reduction" and s.elements == s.inputs[0].numel
    odd = [o for o in g.ops if o.name.startswith("memprobe_test.")] + g.unmodelled
    assert g.unmodelled and all(o.flops is None for o in g.unmodelled)
    assert any("mystery" in o.name for o in odd)


def test_activations_pytorch_leaves_untagged_are_counted_element_wise():
    """ReLU6's backward (hardtanh_backward) and hardswish carry no `pointwise` tag in PyTorch:
    they were unmodelled, and a MobileNet's step 98 % covered."""
    def build():
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU6(), torch.nn.Linear(16, 16),
                                torch.nn.Hardswish(), torch.nn.Linear(16, 4))
        x, y = torch.randn(5, 8), torch.randint(0, 4, (5,))
        return m, x, (lambda out: torch.nn.functional.cross_entropy(out, y))

    g = C.capture_step(build, optimizer="sgd")
    for packet in ("hardtanh_backward", "hardswish", "hardswish_backward"):
        op = next(o for o in g.ops if o.packet == packet)
        assert op.category == "pointwise" and op.elements == 5 * 16, packet
    assert not g.unmodelled, [o.name for o in g.unmodelled]


def test_in_place_and_out_arguments_are_writes_and_views_run_no_kernel():
    g = C.capture_step(_mlp, optimizer="sgd")
    mul_ = next(o for o in g.ops if o.packet == "mul_")
    assert mul_.reads == mul_.writes  # momentum buffer scaled in place: read and written
    views = [o for o in g.ops if o.category == "view"]
    assert views and all(not o.kernel and not o.writes for o in views)


def test_a_model_too_big_to_allocate_is_captured_under_fake_tensors():
    # 2.4 GiB of weights and as much again of gradient and momentum: never allocated
    def build():
        m = torch.nn.Sequential(torch.nn.Linear(20000, 32000), torch.nn.Linear(32000, 10))
        return m, torch.randn(4, 20000), (lambda out: out.sum())

    g = C.capture_step(build, optimizer="sgd")
    params = sum(s.nbytes for s in g.storages.values() if s.role == "param")
    assert params > 2 << 30


def test_a_real_module_is_copied_to_fake_tensors_and_left_as_it_was():
    m, x, loss_fn = _mlp()
    before = m[0].weight.detach().clone()
    g = C.capture_step(model=m, inputs=x, loss_fn=lambda out: out.sum(), optimizer="adamw")
    assert torch.equal(m[0].weight, before) and m[0].weight.grad is None
    assert g.counts()["aten.addmm.default"] == 2 and g.batch == 5


def test_a_step_without_a_loss_says_what_to_return():
    def build():
        m, x, _ = _mlp()
        return m, x

    with pytest.raises(C.CaptureError, match="loss_fn"):
        C.capture_step(build)


def test_the_step_frees_its_activations_and_keeps_parameters_states_and_gradients():
    g = C.capture_step(_mlp, optimizer="adamw")
    freed = {sid for o in g.ops for sid in o.frees}
    kept = {sid for sid, s in g.storages.items() if s.role in ("param", "state", "grad", "input")}
    assert freed and not (freed & kept)
    relu = next(o for o in g.ops if o.packet == "relu")  # saved for the backward, freed there
    (out,) = relu.writes
    free_at = next(o.index for o in g.ops if out in o.frees)
    assert g.ops[free_at].phase == "backward"
    sqrt = next(o for o in g.ops if o.packet == "sqrt")  # AdamW's temporary: freed in the update
    assert next(o.phase for o in g.ops if sqrt.writes[0] in o.frees) == "optimizer"


def test_cpu_attention_is_counted_by_flop_counters_attention_formula():
    from torch.utils.flop_counter import sdpa_flop_count

    class Att(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(16, 48)

        def forward(self, x):
            q, k, v = self.qkv(x).view(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    g = C.capture_step(lambda: (Att(), torch.randn(2, 5, 16), (lambda out: out.sum())), optimizer="sgd")
    att = [o for o in g.ops if "scaled_dot_product" in o.name]
    assert att and all(o.category == "gemm" and o.flops > 0 for o in att)
    fwd = next(o for o in att if o.phase == "forward")
    assert fwd.flops == sdpa_flop_count((2, 2, 5, 8), (2, 2, 5, 8), (2, 2, 5, 8))
