"""Weighted-sum kernel (fastadl/kernels/triton/weighted_sum.py) vs Σ_k w_k · y_k in torch: output, dy, dw."""

import pytest
import torch

from fastadl.ops.triton.functions import weighted_sum

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)


def _run(ys, w, g):
    ys, w = ys.clone().requires_grad_(), w.clone().requires_grad_()
    out = weighted_sum(ys, w)
    return (out, *torch.autograd.grad(out, (ys, w), g))


@pytest.mark.parametrize(
    "K, shape",
    [
        (1, (1,)),  # minimal
        (7, (3, 5, 13, 17)),  # one edge's 7 live branches; 3,315 elements: a partial last block
        (3, (2, 1, 1, 1)),  # 1×1 maps
    ],
)
def test_weighted_sum_matches_torch(K, shape):
    ys = torch.randn(K, *shape, device=DEVICE)
    w = torch.randn(K, device=DEVICE).softmax(0)
    g = torch.randn(shape, device=DEVICE)
    ref_ys, ref_w = ys.clone().requires_grad_(), w.clone().requires_grad_()
    ref = torch.einsum("k,k...->...", ref_w, ref_ys)
    expected = (ref, *torch.autograd.grad(ref, (ref_ys, ref_w), g))
    for got, exp in zip(_run(ys, w, g), expected, strict=True):
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-5)


def test_weighted_sum_is_deterministic():
    ys = torch.randn(7, 3, 5, 13, 17, device=DEVICE)
    w, g = torch.randn(7, device=DEVICE), torch.randn(3, 5, 13, 17, device=DEVICE)
    for a, b in zip(_run(ys, w, g), _run(ys, w, g), strict=True):
        assert torch.equal(a, b)


def test_weighted_sum_rejects_mismatched_weights():
    with pytest.raises(ValueError, match="disagree"):
        weighted_sum(torch.randn(3, 4, device=DEVICE), torch.randn(2, device=DEVICE))
