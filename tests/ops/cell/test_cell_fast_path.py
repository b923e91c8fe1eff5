"""The cell-level fast path (fastadl/ops/cell/fast.py) is the reference function.

A SearchCell or SuperNet whose edges are `fused`/`auto` runs each cell as one autograd node
(its paths stacked, a state's edges together, hand-written backward). Against the same
network run edge by edge with `reference`: outputs, the gradients of the input, of every
weight, of α and β, and the BatchNorm running statistics after several training steps, in
training and eval mode, on small odd-sized trellises. Whole supernets with α, β far from
uniform are ill-conditioned in float32, so float64 is the exact check and float32 is required
to be about as close to float64 as the float32 reference is.

The whole-cell and whole-supernet checks run on the C++ kernels' route and with every kernel
off (the ``cpu_kernels`` fixture, tests/conftest.py): the second is the route CUDA runs.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from float64_agreement import ULP_FLOOR, assert_errors_within, rounded_rms_errors
from torch import nn

from fastadl import PRIMITIVES, SearchCell, SuperNet, convert_mixed_ops
from fastadl.kernels.cpu import accepts
from fastadl.ops.cell import fanout
from fastadl.ops.cell import fast as cell_fast
from fastadl.ops.cell.cpu.groups import group_forward
from fastadl.ops.cell.cpu.rows import NATIVE_POINTWISE_CHANNELS
from fastadl.ops.cell.function import CellFunction
from fastadl.space.cell_topology import num_edges

pytestmark = pytest.mark.usefixtures("one_thread")


def trellis(B: int, dtype=torch.float64, backend="reference", seed=0) -> SuperNet:
    torch.manual_seed(seed)
    net = SuperNet(5, layers=3, filter_multiplier=2, block_multiplier=B, backend=backend)
    with torch.no_grad():  # far from uniform: the ill-conditioned case
        net.alphas.normal_(0, 1.5)
        net.betas.normal_(0, 1.5)
    return net.to(dtype)


def fast_copy(net: nn.Module) -> nn.Module:
    return convert_mixed_ops(copy.deepcopy(net), "fused")


def outputs_and_grads(net: nn.Module, x: torch.Tensor, seed: int = 1) -> list[torch.Tensor]:
    """[output, dL/dx, dL/d every parameter (α and β included)] for a fixed upstream gradient."""
    x = x.clone().requires_grad_()
    out = net(x)
    # drawn in float64 whatever the dtype: randn draws other numbers in float32
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g = g.to(out.dtype)
    params = list(net.parameters())
    return [out.detach(), *torch.autograd.grad(out, [x, *params], g)]


def assert_same(got, want, what: str = "", tol: float = 1e-7) -> None:
    """Elementwise within tol relative to each tensor's largest magnitude (float64 roundoff in
    sums that the two paths take in different orders)."""
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        scale = b.abs().max().item() if b.numel() else 1.0
        torch.testing.assert_close(
            a, b, rtol=tol, atol=tol * max(scale, 1e-3), msg=lambda m, i=i: f"{what} #{i}: {m}"
        )


def supernet_run(net: nn.Module, x: torch.Tensor) -> list[list[torch.Tensor]]:
    """Three training-mode forward/backward passes (running statistics move between them), the
    buffers after them, then one in eval mode."""
    train = [outputs_and_grads(net, x, step) for step in range(3)]
    buffers = list(net.buffers())
    net.eval()
    return [*train, buffers, outputs_and_grads(net, x)]


@functools.cache
def reference_run(B: int) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """(input, supernet_run of the reference trellis), shared by the routes."""
    ref = trellis(B)
    x = torch.randn(2, 3, 19, 23, dtype=torch.float64)  # odd sizes: 10×12 … 2×3 maps
    return x, supernet_run(ref, x)


@pytest.mark.numerics
@pytest.mark.parametrize(
    "cpu_kernels", ["C++ kernels", "ATen depthwise convs", "no C++ kernels"], indirect=True
)
@pytest.mark.parametrize("B", [3, 5])
def test_supernet_is_the_reference_function_in_float64(B, cpu_kernels):
    x, want = reference_run(B)
    got = supernet_run(fast_copy(trellis(B)), x)
    for what, a, b in zip(["train"] * 3 + ["buffer", "eval"], got, want, strict=True):
        assert_same(a, b, what)


@functools.cache
def float32_reference(B: int) -> tuple[dict, torch.Tensor, list[torch.Tensor], list[float]]:
    """(the float64 trellis' state before any forward, input, float64 outputs_and_grads, the
    float32 reference's error per tensor: RMS over random roundings)."""
    ref64 = trellis(B)
    state64 = copy.deepcopy(ref64.state_dict())
    x = torch.randn(2, 3, 17, 21, dtype=torch.float64)
    want = outputs_and_grads(ref64, x)
    template = trellis(B, torch.float32)
    return state64, x, want, rounded_rms_errors(template, state64, x, want, outputs_and_grads)


@pytest.mark.numerics
@pytest.mark.parametrize("B", [3, 5])
def test_supernet_float32_is_as_close_to_float64_as_the_float32_reference(B, cpu_kernels):
    """Output and every gradient within 3× the reference's error from float64, per tensor, each
    path's error the RMS over random roundings (float64_agreement.rounded_rms_errors)."""
    state64, x, want, e_ref = float32_reference(B)
    template = fast_copy(trellis(B, torch.float32))
    e_fast = rounded_rms_errors(template, state64, x, want, outputs_and_grads)
    names = ["output", "input", *(n for n, _ in template.named_parameters())]
    assert_errors_within(e_fast, e_ref, names, floor=ULP_FLOOR)


def test_running_statistics_follow_the_sequential_per_path_updates(cpu_kernels):
    """Several SGD steps on both networks: weights, α, β and every BN buffer stay together
    (each stacked evaluation updates a module as P sequential reference evaluations would)."""
    ref = trellis(3)
    fast = fast_copy(ref)
    # 33×29 inputs: the coarsest maps hold 3×3 pixels (a BatchNorm over 2 values makes a few
    # SGD steps amplify float64 roundoff a thousandfold per step in either path)
    opts = [torch.optim.SGD(n.parameters(), lr=0.003) for n in (ref, fast)]
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        x = torch.randn(2, 3, 33, 29, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 5, (2, 33, 29), generator=gen)
        for net, opt in zip((ref, fast), opts, strict=True):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    assert_same(list(fast.state_dict().values()), list(ref.state_dict().values()), "state")


@pytest.mark.parametrize(
    "prims",
    [
        pytest.param(PRIMITIVES, id="all"),
        pytest.param(("none", "skip_connect", "sep_conv_3x3"), id="sep-only"),
        pytest.param(("max_pool_3x3", "dil_conv_5x5", "avg_pool_3x3"), id="no-sep-no-skip"),
        pytest.param(("none", "skip_connect", "avg_pool_3x3"), id="no-convs"),
    ],
)
@pytest.mark.parametrize(("C", "size"), [(3, (9, 7)), (17, (4, 4)), (5, (2, 3)), (8, (5, 3))])
@pytest.mark.parametrize(
    ("route", "cpu_kernels"),
    [
        ("group kernel", "C++ kernels"),
        ("per-kernel calls", "C++ kernels"),
        ("per-kernel calls", "no C++ kernels"),
    ],
    indirect=["cpu_kernels"],
)
def test_search_cell_on_three_paths_matches_reference(
    prims, C, size, route, cpu_kernels, monkeypatch
):
    """SearchCell.forward_paths (one trellis node) for any primitive subset, both pointwise
    GEMM layouts (C < 16 block-diagonal, C >= 16 batched) and merged/cropped conv runs; the
    groups' forward as one C++ call (fastadl/ops/cell/cpu/groups.py), as separate C++ calls,
    and with no C++ kernel at all (CUDA's route)."""
    calls = []
    if route == "per-kernel calls":
        monkeypatch.setattr(fanout, "group_native_ok", lambda *a: False)
    else:
        monkeypatch.setattr(
            fanout, "group_forward", lambda *a: calls.append(1) or group_forward(*a)
        )
    torch.manual_seed(0)
    ref = SearchCell(C, 3, prims, backend="reference").double().train()
    fast = convert_mixed_ops(copy.deepcopy(ref), "fused")
    s0 = torch.randn(2, C, *size, dtype=torch.float64, requires_grad=True)
    s1 = [torch.randn(2, C, *size, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    alpha = torch.randn(num_edges(3), len(prims), dtype=torch.float64, requires_grad=True)
    beta = torch.rand(3, dtype=torch.float64, requires_grad=True)

    def run(cell):
        out = cell.forward_paths(s0, s1, alpha.softmax(-1), beta)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
        return [out, *torch.autograd.grad(out, [s0, *s1, alpha, beta, *cell.parameters()], g)]

    for mode in ("train", "eval"):
        getattr(ref, mode)()
        getattr(fast, mode)()
        assert_same(run(fast), run(ref), mode)
    assert_same(list(fast.buffers()), list(ref.buffers()), "buffer")
    if route == "group kernel" and accepts(s0) and C in NATIVE_POINTWISE_CHANNELS:
        assert calls, "the group kernel was not used"


def count_cell_calls(monkeypatch) -> list[int]:
    calls = []
    apply = CellFunction.apply

    def counting(*args):
        calls.append(args[1])
        return apply(*args)

    monkeypatch.setattr(CellFunction, "apply", counting)
    return calls


def test_one_autograd_node_per_trellis_node(monkeypatch):
    calls = count_cell_calls(monkeypatch)
    net = trellis(3, backend="fused")
    net(torch.randn(2, 3, 17, 15, dtype=torch.float64)).sum().backward()
    assert len(calls) == 9 and sum(calls) == 15  # 9 nodes at L = 3, 15 cell evaluations


def test_eval_falls_back_where_loaded_pool_statistics_differ(cpu_kernels, monkeypatch):
    """In eval mode the edges reading one state share a pool BN result only if their running
    statistics agree; a loaded state where they do not is run edge by edge (still correct)."""
    torch.manual_seed(0)
    ref = SearchCell(4, 3, backend="reference").double().eval()
    with torch.no_grad():
        ref.edges[0].ops[1].bn.running_mean.fill_(0.3)  # max-pool BN of one H^{l-2} edge
    fast = convert_mixed_ops(copy.deepcopy(ref), "fused")
    calls = count_cell_calls(monkeypatch)
    s0, s1 = (
        torch.randn(2, 4, 6, 5, dtype=torch.float64),
        torch.randn(2, 4, 6, 5, dtype=torch.float64),
    )
    w = torch.randn(num_edges(3), 8, dtype=torch.float64).softmax(-1)
    torch.testing.assert_close(fast(s0, s1, w), ref(s0, s1, w), rtol=1e-10, atol=1e-12)
    assert calls == []
    with torch.no_grad():  # once they agree again the cell runs as one node
        for e, ref_e in zip(fast.edges, ref.edges, strict=True):
            e.ops[1].bn.running_mean.fill_(0.3)
            ref_e.ops[1].bn.running_mean.fill_(0.3)
    torch.testing.assert_close(fast(s0, s1, w), ref(s0, s1, w), rtol=1e-10, atol=1e-12)
    assert calls == [1]


def test_stacked_statistics_survive_conversion_and_loading():
    """The cell keeps its BN statistics as rows of stacked tensors (module buffers are views):
    .double(), load_state_dict and deepcopy must leave the modules' buffers authoritative."""
    torch.manual_seed(0)
    ref = SearchCell(3, 3, backend="reference").train()
    fast = convert_mixed_ops(copy.deepcopy(ref), "fused")
    s = [torch.randn(2, 3, 5, 5) for _ in range(2)]
    w = torch.randn(num_edges(3), 8).softmax(-1)
    fast(*s, w), ref(*s, w)  # stacks fast's statistics
    fast, ref = fast.double(), ref.double()  # replaces every buffer
    s, w = [t.double() for t in s], w.double()
    assert_same([fast(*s, w)], [ref(*s, w)])
    other = SearchCell(3, 3, backend="reference").double().train()
    other(*s, w)
    fast.load_state_dict(other.state_dict())
    ref.load_state_dict(other.state_dict())
    twin = copy.deepcopy(fast)
    want = ref(*s, w)  # one training forward each: the running statistics move once
    for net in (fast, twin):
        assert_same([net(*s, w)], [want])
        assert_same(list(net.state_dict().values()), list(ref.state_dict().values()), "state")


def test_cell_recompute_gives_the_same_gradients_and_saves_only_inputs(cpu_kernels):
    torch.manual_seed(0)
    ref = SearchCell(6, 3, backend="fused").double().train()
    rec = convert_mixed_ops(copy.deepcopy(ref), "fused", recompute=True)
    s0 = torch.randn(2, 6, 9, 9, dtype=torch.float64, requires_grad=True)
    s1 = [torch.randn(2, 6, 9, 9, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    beta = torch.rand(2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(num_edges(3), 8, dtype=torch.float64).softmax(-1)
    saved = {}

    def run(cell, key):
        numel = []

        def pack(t):
            numel.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = cell.forward_paths(s0, s1, w, beta)
        saved[key] = sum(numel)
        return torch.autograd.grad(out.square().sum(), [s0, *s1, beta, *cell.parameters()])

    for a, b in zip(run(rec, "rec"), run(ref, "full"), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert saved["rec"] * 10 < saved["full"], saved


def test_edges_outside_the_fast_path_run_edge_by_edge(monkeypatch):
    """A cell with one reference edge, or affine BatchNorms, is not covered: same result."""
    calls = count_cell_calls(monkeypatch)
    torch.manual_seed(0)
    cell = SearchCell(3, 2, backend="fused")
    cell.edges[2].backend = "reference"
    s, w = [torch.randn(2, 3, 5, 5) for _ in range(2)], torch.randn(num_edges(2), 8).softmax(-1)
    out = cell(*s, w)
    assert calls == [] and out.shape == (2, 6, 5, 5)
    assert not cell_fast.cell_path_enabled(cell)
