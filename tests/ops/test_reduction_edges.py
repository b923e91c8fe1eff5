"""Stride-2 (DARTS reduction) edges and PC-DARTS partial-channel edges.

Every backend against `reference` (outputs; gradients of x, every op weight and the mixing
weights; BatchNorm running statistics; odd sizes, odd channel counts, eval mode, recompute),
the reference's own semantics against DARTS' / PC-DARTS' formulas, and the constructor's
spellings and errors.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from test_backends import (
    FAST,
    assert_all_close,
    device_for,
    grads_of,
    randomize_bn_stats,
    run_edge,
)
from torch import nn

from fastadl import PRIMITIVES, MixedOp
from fastadl.ops.edge.fused import cached_plan
from fastadl.ops.reference import OPS, FactorizedReduce, Identity

STRIDE2_CASES = [  # (N, C, H, W), primitives
    pytest.param((2, 4, 9, 7), PRIMITIVES, id="all-ops-odd-9x7"),
    pytest.param((2, 4, 8, 10), PRIMITIVES, id="all-ops-even-8x10"),
    pytest.param((3, 5, 7, 6), PRIMITIVES, id="odd-channels-5"),
    pytest.param((1, 3, 5, 5), PRIMITIVES, id="minimal-batch-1"),
    pytest.param((2, 4, 9, 7), ("skip_connect", "none"), id="reduce-only"),
    pytest.param(
        (2, 6, 11, 9), ("dil_conv_5x5", "max_pool_3x3", "skip_connect", "sep_conv_3x3"), id="subset"
    ),
    pytest.param((2, 4, 7, 7), ("sep_conv_5x5", "dil_conv_3x3"), id="convs-only"),
]


def check_edge(op: MixedOp, backend: str, x: torch.Tensor, alpha: torch.Tensor):
    """A copy of op under ``backend`` against op under `reference`: outputs, gradients, and the
    running statistics both leave behind."""
    fast = copy.deepcopy(op)
    want = run_edge(op, "reference", x, alpha)
    got = run_edge(fast, backend, x, alpha)
    assert_all_close(got, want, ["out", "x", "weights", *(n for n, _ in op.named_parameters())])
    for (name, a), (_, b) in zip(fast.named_buffers(), op.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    return got


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize(("shape", "prims"), STRIDE2_CASES)
def test_stride2_edge_matches_reference(backend, shape, prims):
    dev = device_for(backend)
    torch.manual_seed(0)
    op = MixedOp(shape[1], 2, prims, backend="reference").to(dev).train()
    x, alpha = torch.randn(shape, device=dev), torch.randn(len(prims), device=dev)
    out = check_edge(op, backend, x, alpha)[0]
    assert out.shape == (shape[0], shape[1], (shape[2] + 1) // 2, (shape[3] + 1) // 2)


@pytest.mark.parametrize("recompute", [False, True])
def test_stride2_eval_mode_and_recompute(recompute):
    torch.manual_seed(1)
    op = MixedOp(4, 2, backend="reference")
    randomize_bn_stats(op)
    op.eval()
    op.recompute = recompute
    check_edge(op, "fused", torch.randn(2, 4, 9, 11), torch.randn(len(PRIMITIVES)))
    op.train()
    check_edge(op, "fused", torch.randn(2, 4, 9, 11), torch.randn(len(PRIMITIVES)))


@pytest.mark.parametrize("stride", [1, 2])
def test_fused_covers_stride2_and_partial_channel_edges(stride):
    """The fused path computes these edges itself rather than falling back to the reference."""
    for K in (1, 4):
        op = MixedOp(8, stride, partial_channels=K)
        assert cached_plan(op.ops, op.primitives, 8 // K) is not None, (stride, K)


PARTIAL_CASES = [  # (N, C, H, W), K, stride
    pytest.param((2, 8, 9, 7), 4, 1, id="K4-stride1-odd"),
    pytest.param((2, 8, 9, 7), 2, 2, id="K2-stride2-odd"),
    pytest.param((3, 12, 6, 8), 4, 2, id="K4-stride2-even"),
    pytest.param((2, 6, 5, 5), 3, 1, id="K3-stride1"),
]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize(("shape", "K", "stride"), PARTIAL_CASES)
def test_partial_channel_edge_matches_reference(backend, shape, K, stride):
    dev = device_for(backend)
    torch.manual_seed(2)
    op = MixedOp(shape[1], stride, partial_channels=K, backend="reference").to(dev).train()
    check_edge(op, backend, torch.randn(shape, device=dev), torch.randn(8, device=dev))


def pc_darts_edge(op: MixedOp, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """PC-DARTS' MixedOp.forward written out: mix C/K channels, max-pool the rest at stride 2,
    concatenate, channel_shuffle(K) (view as K groups, transpose group and channel)."""
    K, C = op.partial_channels, x.shape[1]
    part, rest = x[:, : C // K], x[:, C // K :]
    mixed = sum(
        wk * m(part) for wk, m, p in zip(w, op.ops, op.primitives, strict=True) if p != "none"
    )
    if mixed.shape[2] != x.shape[2]:
        rest = F.max_pool2d(rest, 2, 2, ceil_mode=True)
    y = torch.cat([mixed, rest], 1)
    N, _, H, W = y.shape
    return y.view(N, K, C // K, H, W).transpose(1, 2).reshape(N, C, H, W)


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channels_are_pc_darts_edges(stride):
    torch.manual_seed(3)
    op = MixedOp(12, stride, partial_channels=4, backend="reference")
    assert all(m.bn.num_features == 3 for m in op.ops if hasattr(m, "bn"))  # ops on C/K
    x, w = torch.randn(2, 12, 9, 8), torch.randn(8).softmax(0)
    torch.testing.assert_close(op(x, w), pc_darts_edge(copy.deepcopy(op), x, w))


def test_reference_stride2_ops_follow_darts():
    torch.manual_seed(4)
    x = torch.randn(2, 6, 9, 7)
    for name in PRIMITIVES[1:]:
        op = OPS[name](6, False, 2)
        assert op(x).shape == (2, 6, 5, 4), name  # ceil(H/2) × ceil(W/2) for every op
    sep = OPS["sep_conv_3x3"](6, False, 2)
    assert [m.stride for m in sep.op if isinstance(m, nn.Conv2d)] == [
        (2, 2),
        (1, 1),
        (1, 1),
        (1, 1),
    ]
    assert isinstance(OPS["skip_connect"](6, False), Identity)
    fr = OPS["skip_connect"](6, False, 2)
    assert isinstance(fr, FactorizedReduce)
    assert {k for k in fr.state_dict() if "weight" in k} == {"conv_1.weight", "conv_2.weight"}
    xe = torch.randn(2, 6, 8, 10)  # even: DARTS' FactorizedReduce exactly
    r = xe.relu()
    want = fr.bn(torch.cat([fr.conv_1(r), fr.conv_2(r[:, :, 1:, 1:])], 1))
    torch.testing.assert_close(fr(xe), want)


def test_all_none_stride2_edge_is_zeros_of_the_output_shape():
    op = MixedOp(3, 2, ("none", "none"))
    for backend in ("reference", "fused"):
        op.backend = backend
        out = op(torch.randn(2, 3, 7, 6), torch.ones(2) / 2)
        assert torch.equal(out, torch.zeros(2, 3, 4, 3)), backend


def test_constructor_spellings():
    assert MixedOp(4).stride == 1 and MixedOp(4).primitives == PRIMITIVES
    assert MixedOp(4, 1).stride == 1
    op = MixedOp(4, 2)  # DARTS' reduction edge: MixedOp(C, stride)
    assert op.stride == 2 and op(torch.randn(2, 4, 8, 8), torch.ones(8) / 8).shape == (2, 4, 4, 4)
    prims = ("none", "sep_conv_3x3")
    assert MixedOp(4, prims).primitives == prims  # the second positional names the primitives
    assert MixedOp(4, prims, backend="reference").stride == 1
    op = MixedOp(8, 2, primitives=prims, affine=True, partial_channels=2, recompute=True)
    assert (op.stride, op.partial_channels, op.primitives, op.recompute) == (2, 2, prims, True)
    assert op.ops[1].op[3].affine and op.ops[1].op[3].num_features == 4
    assert "stride=2" in repr(op) and "partial_channels=2" in repr(op)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(C=4, stride=3), "stride must be 1 or 2.*stride=3"),
        (dict(C=8, partial_channels=3), "partial_channels must be a positive divisor of C=8"),
        (dict(C=8, partial_channels=0), "partial_channels"),
        (dict(C=0), "C must be a positive channel count"),
        (dict(C=4, stride=2, partial_channels=4), "skip_connect at stride=2.*partial_channels=4"),
        (dict(C=4, primitives="sep_conv_3x3"), "primitives must be a sequence"),
        (dict(C=4, primitives=("conv_7x7",)), "unknown primitive"),
        (dict(C=4, backend="cuda"), "unknown mixed-op backend"),
    ],
)
def test_unsupported_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MixedOp(**kwargs)


def test_bad_calls_are_clear():
    with pytest.raises(TypeError, match="primitives twice"):
        MixedOp(4, ("none",), primitives=("none",))
    op = MixedOp(8, 2, partial_channels=2)
    with pytest.raises(ValueError, match=r"MixedOp\(C=8\) expects x: \(N, 8, H, W\)"):
        op(torch.randn(2, 4, 6, 6), torch.ones(8) / 8)


def test_stride2_state_dict_moves_between_backends():
    torch.manual_seed(5)
    ref = MixedOp(4, 2, backend="reference")
    fused = MixedOp(4, 2, backend="fused")
    assert list(ref.state_dict()) == list(fused.state_dict())
    fused.load_state_dict(ref.state_dict())
    x, w = torch.randn(2, 4, 7, 9), torch.randn(8).softmax(0)
    with torch.no_grad():
        torch.testing.assert_close(fused.eval()(x, w), ref.eval()(x, w), rtol=1e-4, atol=1e-5)
    grads_of(fused.train(), fused(x, w), [])  # and it still trains
