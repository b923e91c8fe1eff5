"""Every mixed-op backend against `reference` (docs/ARCHITECTURE.md "Mixed-op backends").

Outputs and gradients (x, every op parameter, the mixing weights; α and β for the SuperNet),
BatchNorm running statistics, eval mode, odd sizes, all dilations, any subset of primitives;
bitwise repeatability; state_dicts across backends; convert_mixed_ops; torch.compile.
`triton` runs on CUDA, or on CPU under TRITON_INTERPRET=1 on tiny shapes only.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys

import pytest
import torch
from float64_agreement import assert_as_close_to_float64
from torch import nn

from fastadl import PRIMITIVES, MixedOp, SearchCell, SuperNet, convert_mixed_ops
from fastadl.ops.dispatch import BACKENDS, mixed_op, reference_mixed_op, resolve_backend

CUDA = torch.cuda.is_available()
HAS_TRITON_BACKEND = importlib.util.find_spec("fastadl.ops.triton.backend") is not None
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
TOL = dict(rtol=1e-4, atol=1e-5)


def triton_skip_reason(big: bool) -> str | None:
    if not HAS_TRITON_BACKEND:
        return "fastadl.ops.triton.backend is not available"
    if CUDA:
        return None
    if not INTERPRET:
        return "triton needs CUDA, or TRITON_INTERPRET=1 to run interpreted on CPU"
    if big:
        return "the Triton interpreter is too slow for a SearchCell/SuperNet on CPU"
    return None


def backend_param(name: str, big: bool = False):
    reason = triton_skip_reason(big) if name == "triton" else None
    return pytest.param(name, marks=pytest.mark.skip(reason=reason) if reason else ())


FAST = [backend_param("fused"), backend_param("triton")]
FAST_BIG = [backend_param("fused"), backend_param("triton", big=True)]


def device_for(backend: str) -> str:
    return "cuda" if CUDA else "cpu"


def randomize_bn_stats(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)


def grads_of(model: nn.Module, out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 1):
    """(out, grads of every input and every parameter) for a fixed random upstream gradient."""
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.device)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out, [*inputs, *params], g, allow_unused=True)
    return [out.detach(), *grads]


def assert_all_close(got, want, names=None):
    """Elementwise within float32 tolerance, the absolute part scaled by the tensor's largest
    magnitude (a network's gradients sum many products in a different order per backend)."""
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        name = names[i] if names else str(i)
        if b is None:
            assert a is None or not a.abs().max().item(), name
            continue
        atol = TOL["atol"] * max(1.0, b.abs().max().item())
        torch.testing.assert_close(
            a, b, rtol=TOL["rtol"], atol=atol, msg=lambda m, n=name: f"{n}: {m}"
        )


def run_edge(op: MixedOp, backend: str, x: torch.Tensor, alpha: torch.Tensor):
    op.backend = backend
    x, alpha = x.clone().requires_grad_(), alpha.clone().requires_grad_()
    return grads_of(op, op(x, alpha.softmax(-1)), [x, alpha])


# ---------------------------------------------------------------- one edge (MixedOp)

EDGE_CASES = [  # (N, C, H, W), primitives
    pytest.param((2, 4, 9, 7), PRIMITIVES, id="all-ops-odd-9x7"),
    pytest.param((1, 3, 5, 6), PRIMITIVES, id="minimal-batch-1"),
    pytest.param(
        (2, 5, 11, 13), ("dil_conv_5x5", "none", "avg_pool_3x3", "sep_conv_3x3"), id="subset"
    ),
    pytest.param((3, 2, 6, 5), ("sep_conv_5x5", "dil_conv_3x3"), id="convs-only"),
    pytest.param((2, 3, 7, 7), ("skip_connect", "max_pool_3x3", "none"), id="no-convs"),
]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize(("shape", "prims"), EDGE_CASES)
def test_edge_matches_reference_in_training_mode(backend, shape, prims):
    dev = device_for(backend)
    torch.manual_seed(0)
    ref = MixedOp(shape[1], prims, backend="reference").to(dev).train()
    fast = copy.deepcopy(ref)
    x = torch.randn(shape, device=dev)
    alpha = torch.randn(len(prims), device=dev)
    want = run_edge(ref, "reference", x, alpha)
    got = run_edge(fast, backend, x, alpha)
    assert_all_close(got, want)
    # running statistics move the same way (momentum, unbiased variance, batch counter)
    for (name, a), (_, b) in zip(fast.named_buffers(), ref.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("backend", FAST)
def test_edge_matches_reference_in_eval_mode(backend):
    dev = device_for(backend)
    torch.manual_seed(1)
    ref = MixedOp(4, backend="reference").to(dev)
    randomize_bn_stats(ref)
    ref.eval()
    fast = copy.deepcopy(ref)
    x, alpha = torch.randn(2, 4, 9, 11, device=dev), torch.randn(len(PRIMITIVES), device=dev)
    assert_all_close(run_edge(fast, backend, x, alpha), run_edge(ref, "reference", x, alpha))
    assert all(torch.equal(a, b) for a, b in zip(fast.buffers(), ref.buffers(), strict=True))


def test_fused_momentum_none_and_mixed_modes_follow_the_modules():
    """Cumulative-average BNs are updated like the modules'; BNs in different modes (which the
    fused path does not cover) fall back to the reference and still give its result."""
    torch.manual_seed(2)
    ref = MixedOp(3, backend="reference").train()
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    fast = copy.deepcopy(ref)
    x, alpha = torch.randn(2, 3, 8, 8), torch.randn(len(PRIMITIVES))
    for _ in range(2):
        assert_all_close(run_edge(fast, "fused", x, alpha), run_edge(ref, "reference", x, alpha))
    assert all(
        torch.allclose(a.float(), b.float())
        for a, b in zip(fast.buffers(), ref.buffers(), strict=True)
    )
    ref.ops[1].bn.eval()  # max_pool's BN in eval mode, the others training
    fast.ops[1].bn.eval()
    assert_all_close(run_edge(fast, "fused", x, alpha), run_edge(ref, "reference", x, alpha))


def test_fused_affine_bn_falls_back_to_reference():
    torch.manual_seed(3)
    ref = MixedOp(3, backend="reference", affine=True)
    fast = copy.deepcopy(ref)
    x, alpha = torch.randn(2, 3, 6, 6), torch.randn(len(PRIMITIVES))
    assert_all_close(run_edge(fast, "fused", x, alpha), run_edge(ref, "reference", x, alpha))


def test_fused_float64_and_no_grad_and_partial_grads():
    torch.manual_seed(4)
    op = MixedOp(3, backend="reference").double()
    fast = copy.deepcopy(op)
    x, alpha = torch.randn(2, 3, 7, 9, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    assert_all_close(run_edge(fast, "fused", x, alpha), run_edge(op, "reference", x, alpha))
    with torch.no_grad():
        fast.backend = "fused"
        torch.testing.assert_close(fast(x, alpha.softmax(-1)), op(x, alpha.softmax(-1)), **TOL)
    # only the mixing weights need a gradient (x and the op weights frozen)
    for p in fast.parameters():
        p.requires_grad_(False)
    w = alpha.softmax(-1).requires_grad_()
    (gw,) = torch.autograd.grad(fast(x, w).square().sum(), w)
    (gw_ref,) = torch.autograd.grad(op(x, w).square().sum(), w)
    torch.testing.assert_close(gw, gw_ref, **TOL)


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_fused_accepts_any_input_layout(layout):
    torch.manual_seed(11)
    ref = MixedOp(5, backend="reference")
    fast = copy.deepcopy(ref)
    x = torch.randn(2, 5, 12, 9)
    x = (
        x.contiguous(memory_format=torch.channels_last)
        if layout == "channels_last"
        else x[..., ::2, :]
    )
    alpha = torch.randn(len(PRIMITIVES))
    assert_all_close(run_edge(fast, "fused", x, alpha), run_edge(ref, "reference", x, alpha))


def test_fused_is_bitwise_repeatable():
    torch.manual_seed(5)
    op = MixedOp(6, backend="fused")
    x, alpha = torch.randn(2, 6, 13, 11), torch.randn(len(PRIMITIVES))
    first = run_edge(copy.deepcopy(op), "fused", x, alpha)
    second = run_edge(copy.deepcopy(op), "fused", x, alpha)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("recompute", [False, True])
def test_fused_recompute_gives_the_same_result(recompute):
    torch.manual_seed(6)
    ref = MixedOp(4, backend="reference")
    fast = copy.deepcopy(ref)
    fast.recompute = recompute
    x, alpha = torch.randn(2, 4, 10, 9), torch.randn(len(PRIMITIVES))
    assert_all_close(run_edge(fast, "fused", x, alpha), run_edge(ref, "reference", x, alpha))


# ---------------------------------------------------------------- a search cell, a SuperNet


@pytest.mark.parametrize("backend", FAST_BIG)
def test_search_cell_matches_reference(backend):
    dev = device_for(backend)
    torch.manual_seed(7)
    ref = SearchCell(3, blocks=5, backend="reference").to(dev)
    fast = convert_mixed_ops(copy.deepcopy(ref), backend)
    s0, s1 = torch.randn(2, 3, 9, 11, device=dev), torch.randn(2, 3, 9, 11, device=dev)
    alpha = torch.randn(20, len(PRIMITIVES), device=dev)

    def run(cell):
        a, b, al = (t.clone().requires_grad_() for t in (s0, s1, alpha))
        return grads_of(cell, cell(a, b, al.softmax(-1)), [a, b, al])

    assert_all_close(run(fast), run(ref))


@pytest.mark.parametrize("backend", FAST_BIG)
def test_supernet_matches_reference(backend):
    dev = device_for(backend)
    torch.manual_seed(8)
    ref = SuperNet(num_classes=3, layers=2, filter_multiplier=2, backend="reference").to(dev)
    fast = SuperNet(num_classes=3, layers=2, filter_multiplier=2, backend=backend).to(dev)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 17, 19, device=dev)

    def run(net):
        xx = x.clone().requires_grad_()
        return grads_of(net, net(xx), [xx])  # parameters include α (alphas) and β (betas)

    names = ["logits", "x"] + [n for n, p in ref.named_parameters() if p.requires_grad]
    got, want = run(fast), run(ref)
    assert_all_close(got, want, names)
    assert names.index("alphas") and names.index("betas")  # α and β were compared
    for (name, a), (_, b) in zip(fast.named_buffers(), ref.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"{n}: {m}")


# ---------------------------------------------------------------- plumbing


def test_state_dict_moves_between_backends():
    torch.manual_seed(9)
    nets = {
        b: SuperNet(num_classes=2, layers=1, filter_multiplier=1, backend=b)
        for b in ("reference", "fused")
    }
    keys = [list(n.state_dict()) for n in nets.values()]
    assert keys[0] == keys[1]
    nets["fused"].load_state_dict(nets["reference"].state_dict())
    x = torch.randn(1, 3, 15, 13)
    with torch.no_grad():
        outs = [n.eval()(x) for n in nets.values()]
    torch.testing.assert_close(outs[0], outs[1], **TOL)


def test_convert_mixed_ops_and_defaults():
    net = SuperNet(num_classes=2, layers=1, filter_multiplier=1)
    edges = [m for m in net.modules() if isinstance(m, MixedOp)]
    assert edges and all(m.backend == "auto" for m in edges)  # the default everywhere
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert convert_mixed_ops(net, "reference", recompute=True) is net
    assert all(m.backend == "reference" and m.recompute for m in edges)
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    op = convert_mixed_ops(MixedOp(2), "fused")  # a bare MixedOp converts itself
    assert op.backend == "fused" and not op.recompute
    with pytest.raises(ValueError, match="unknown mixed-op backend 'cuda'"):
        convert_mixed_ops(net, "cuda")


def test_backend_names_are_checked_and_auto_resolves():
    assert set(BACKENDS) == {"reference", "fused", "triton", "auto"}
    x = torch.randn(1, 2, 3, 3)
    assert resolve_backend("auto", x) == "fused"  # CPU tensor
    with pytest.raises(ValueError, match="unknown mixed-op backend"):
        MixedOp(2, backend="fast")
    op = MixedOp(2)
    with pytest.raises(ValueError, match="unknown mixed-op backend"):
        mixed_op(x, torch.ones(8) / 8, op.ops, op.primitives, backend="Fused")
    torch.testing.assert_close(
        mixed_op(x, torch.ones(8) / 8, op.ops, op.primitives, backend="auto"),
        reference_mixed_op(x, torch.ones(8) / 8, op.ops, op.primitives),
        **TOL,
    )


def test_import_does_not_import_triton():
    code = "import sys, fastadl; fastadl.MixedOp(2); sys.exit('triton' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_fused_mixed_op_under_torch_compile():
    """A small edge compiled with the default (inductor) backend: same output and gradients."""
    torch.manual_seed(10)
    op = MixedOp(2, backend="fused")
    ref = copy.deepcopy(op)
    x, alpha = torch.randn(2, 2, 5, 5), torch.randn(len(PRIMITIVES))
    compiled = torch.compile(op, fullgraph=True)  # no graph break: the Function is traced

    def run(fn, model):
        xx, al = x.clone().requires_grad_(), alpha.clone().requires_grad_()
        return grads_of(model, fn(xx, al.softmax(-1)), [xx, al])

    assert_all_close(run(compiled, op), run(ref, ref))
    for a, b in zip(op.buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.numerics
def test_triton_small_cell_and_supernet_match_reference():
    """The triton backend through a cell and the trellis, at sizes the interpreter can afford."""
    if triton_skip_reason(False):
        pytest.skip(triton_skip_reason(False))
    dev = device_for("triton")
    torch.manual_seed(9)
    ref = SearchCell(2, blocks=2, backend="reference").to(dev)
    fast = convert_mixed_ops(copy.deepcopy(ref), "triton")
    s0, s1 = torch.randn(2, 2, 5, 7, device=dev), torch.randn(2, 2, 5, 7, device=dev)
    alpha = torch.randn(5, len(PRIMITIVES), device=dev)

    def run(cell):
        a, b, al = (t.clone().requires_grad_() for t in (s0, s1, alpha))
        return grads_of(cell, cell(a, b, al.softmax(-1)), [a, b, al])

    assert_all_close(run(fast), run(ref))

    # the trellis in float32 is ill-conditioned (BatchNorm over 2 images of 6×6 … 1×1 maps), so
    # float64 is the exact result and the Triton float32 kernels must be about as close to it
    # as the float32 reference. Errors of tensors below 1 count absolute (min_scale), as TOL's
    # do: the stem BN's weight gradient is a few 1e-4 by cancellation, and its float32 errors
    # (1e-6 to 2e-5 over seeds, in every backend) are rounding of terms far larger than it
    ref = SuperNet(3, layers=1, filter_multiplier=2, block_multiplier=1, backend="reference")
    fast = SuperNet(3, layers=1, filter_multiplier=2, block_multiplier=1, backend="triton")
    ref, fast = ref.to(dev), fast.to(dev)
    fast.load_state_dict(ref.state_dict())
    ref64 = copy.deepcopy(ref).double()
    x = torch.randn(2, 3, 23, 21, device=dev)

    def run_net(net):
        xx = x.to(next(net.parameters()).dtype).clone().requires_grad_()
        return grads_of(net, net(xx), [xx])

    names = ["logits", "x"] + [n for n, p in ref.named_parameters() if p.requires_grad]
    assert_as_close_to_float64(run_net(fast), run_net(ref), run_net(ref64), names, min_scale=1.0)
