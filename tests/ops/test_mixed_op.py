"""MixedOp (reference backend): the literal weighted sum over the primitives."""

import pytest
import torch

from fastadl import PRIMITIVES, MixedOp
from fastadl.ops.reference import OPS


def test_mixed_op_is_weighted_sum_of_ops_and_skips_none():
    torch.manual_seed(0)
    op = MixedOp(5, backend="reference")
    x = torch.randn(3, 5, 13, 17)
    w = torch.softmax(torch.randn(len(PRIMITIVES)), 0)
    y = op(x, w)  # calling the `none` module would raise: MixedOp must skip it
    expected = sum(w[k] * op.ops[k](x) for k, name in enumerate(PRIMITIVES) if name != "none")
    torch.testing.assert_close(y, expected)


def test_mixed_op_subset_of_primitives_and_bad_weights():
    prims = ("none", "skip_connect", "dil_conv_3x3")
    op = MixedOp(4, primitives=prims, backend="reference")
    x = torch.randn(1, 4, 9, 9)
    w = torch.tensor([0.5, 0.3, 0.2])
    torch.testing.assert_close(op(x, w), 0.3 * x + 0.2 * op.ops[2](x))
    with pytest.raises(ValueError, match="weights of shape"):
        op(x, torch.ones(8))
    with pytest.raises(ValueError, match="unknown primitive"):
        MixedOp(4, primitives=("conv_7x7",))


@pytest.mark.parametrize("name", [p for p in PRIMITIVES if p != "none"])
def test_every_primitive_keeps_shape(name):
    x = torch.randn(2, 3, 7, 11)
    assert OPS[name](3, False)(x).shape == x.shape
