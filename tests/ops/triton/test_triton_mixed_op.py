"""triton_mixed_op vs reference_mixed_op: output; grads of x, every op parameter and the mixing
weights; BatchNorm running stats; any subset/order of primitives; bitwise repeatability."""

import copy

import pytest
import torch
from torch import nn

from fastadl.ops import OPS, PRIMITIVES
from fastadl.ops.dispatch import reference_mixed_op
from fastadl.ops.reference import DilConv
from fastadl.ops.triton.backend import triton_mixed_op

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)

TOL = dict(rtol=1e-4, atol=1e-4)


def _make_ops(C, prims, affine=False):
    ops = nn.ModuleList(OPS[p](C, affine) for p in prims).to(DEVICE)
    for m in ops.modules():  # non-trivial affine BN parameters and running stats
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                if m.affine:
                    m.weight.uniform_(0.5, 2)
                    m.bias.uniform_(-1, 1)
    return ops


def _run(fn, x, w, ops, prims, g):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = fn(x, w, ops, prims)
    params = list(ops.parameters())
    grads = torch.autograd.grad(out, [x, w, *params], g, allow_unused=True)
    return out, grads


def _check_same_as_reference(prims, shape, ops=None, train=True, affine=False):
    ops_ref = ops if ops is not None else _make_ops(shape[1], prims, affine)
    ops_ref.train(train)
    ops_tri = copy.deepcopy(ops_ref)
    x = torch.randn(shape, device=DEVICE)
    w = torch.randn(len(prims), device=DEVICE).softmax(0)
    g = torch.randn(shape, device=DEVICE)
    out_ref, grads_ref = _run(reference_mixed_op, x, w, ops_ref, prims, g)
    out_tri, grads_tri = _run(triton_mixed_op, x, w, ops_tri, prims, g)
    torch.testing.assert_close(out_tri, out_ref, **TOL)
    names = ["x", "weights", *(n for n, _ in ops_ref.named_parameters())]
    for name, a, b in zip(names, grads_tri, grads_ref, strict=True):
        if b is None:  # a parameter the reference never touches: `none`'s weight is still 0-grad
            assert a is None or not a.any(), name
            continue
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"grad {n}: {m}")
    for (name, a), (_, b) in zip(ops_tri.named_buffers(), ops_ref.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"buffer {n}: {m}")


@pytest.mark.parametrize(
    "shape, affine",
    [
        ((3, 5, 13, 17), False),  # the search setting: BN without affine parameters
        ((1, 5, 13, 17), True),  # N = 1; affine BN parameters get gradients too
    ],
)
def test_all_primitives_train(shape, affine):
    _check_same_as_reference(PRIMITIVES, shape, affine=affine)


def test_all_primitives_eval_uses_running_stats():
    _check_same_as_reference(PRIMITIVES, (1, 5, 1, 1), train=False)  # N = 1, 1×1: no batch stats


def test_one_by_one_maps_train():
    _check_same_as_reference(PRIMITIVES, (3, 6, 1, 1))


def test_subset_in_another_order():
    # `none` in the middle (non-contiguous weights), one pool, sep and dil convs without the
    # other two (one depthwise kernel per op instead of the fused first stage)
    prims = ("skip_connect", "dil_conv_5x5", "none", "max_pool_3x3", "sep_conv_3x3")
    _check_same_as_reference(prims, (2, 4, 7, 9), affine=True)


def test_uncovered_modules_fall_back_to_reference():
    C = 4
    ops = nn.ModuleList([
        OPS["avg_pool_3x3"](C, False),
        DilConv(C, 3, dilation=4),  # no kernel for dilation 4
        nn.Conv2d(C, C, 3, padding=1),  # not a primitive at all
    ]).to(DEVICE)  # fmt: skip
    _check_same_as_reference(("avg_pool_3x3", "dil_conv_3x3", "conv_3x3"), (2, C, 9, 7), ops)


def test_all_none_is_zero():
    x = torch.randn(2, 3, 5, 5, device=DEVICE)
    ops = _make_ops(3, ("none", "none"))
    out = triton_mixed_op(x, torch.ones(2, device=DEVICE), ops, ("none", "none"))
    assert torch.equal(out, torch.zeros_like(x))


def test_two_runs_bitwise_equal():
    ops = _make_ops(5, PRIMITIVES)
    x, g = torch.randn(3, 5, 7, 9, device=DEVICE), torch.randn(3, 5, 7, 9, device=DEVICE)
    w = torch.randn(len(PRIMITIVES), device=DEVICE).softmax(0)
    runs = [_run(triton_mixed_op, x, w, copy.deepcopy(ops), PRIMITIVES, g) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0])
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def test_mismatched_arguments_raise():
    ops = _make_ops(3, ("skip_connect",))
    with pytest.raises(ValueError, match="do not match"):
        triton_mixed_op(torch.randn(1, 3, 4, 4, device=DEVICE), torch.ones(2, device=DEVICE), ops,
                        ("skip_connect",))  # fmt: skip
