"""The C++ kernels' long float32 weight-gradient sums (fastadl/kernels/cpu: dwconv.cpp's
depthwise and pointwise.cpp's 1×1 weight gradients) stay accurate however many positions they
sum over: float partial sums over blocks of 64 positions, added into double. On the 16384
positions here (positive terms, so a float chain's rounding adds up) one float chain per sum
erred 54-103 u relative to the sum of |terms| (u = 2^-24); blocked, 0.6-1.2 u."""

from __future__ import annotations

import pytest
import torch

from fastadl.kernels.cpu import accepts
from fastadl.ops.cell.cpu.dwconv import dw_weight_grad_cpp as dw_weight_grad
from fastadl.ops.cell.cpu.rows import pointwise_weight_grad_native

pytestmark = pytest.mark.numerics

U = 2.0**-24
# the blocked sum's worst case is about kSumBlock·u (dwconv.cpp), its rounding errors are
# random, so typically a few u: 8 u catches a single float chain (54 u at the least here)
BOUND = 8 * U


@pytest.fixture(autouse=True)
def _need_kernels():
    if not accepts(torch.zeros(1)):
        pytest.skip("the C++ kernels did not build on this machine (see the warning)")


def _positive(*shape, gen):
    # positive terms: every partial sum grows, so a single chain's rounding adds up
    return torch.rand(*shape, generator=gen, dtype=torch.float64) + 0.5


def _rel_to_abs_sum(got: torch.Tensor, exact: torch.Tensor, abs_sum: torch.Tensor) -> float:
    return ((got.double() - exact).abs() / abs_sum).max().item()


@pytest.mark.parametrize("C", [8, 16, 32])
def test_pointwise_weight_grad_sum_is_blocked(C):
    gen = torch.Generator().manual_seed(C)
    M, R, E = 16384, 1, 2
    g, d = _positive(M, R, E, C, gen=gen), _positive(M, R, E, C, gen=gen)
    g32, d32 = g.float(), d.float()
    exact = torch.einsum("mreo,mrei->reoi", g32.double(), d32.double())
    got = pointwise_weight_grad_native(g32, d32)
    assert got is not None
    assert _rel_to_abs_sum(got, exact, exact.abs()) <= BOUND


@pytest.mark.parametrize(("G", "k"), [(16, 3), (16, 5), (48, 1), (5, 3)])
def test_depthwise_weight_grad_sum_is_blocked(G, k):
    gen = torch.Generator().manual_seed(G + k)
    x = _positive(4, G, 64, 64, gen=gen).float().contiguous(memory_format=torch.channels_last)
    g = _positive(4, G, 64, 64, gen=gen).float().contiguous(memory_format=torch.channels_last)
    xd = x.double().requires_grad_()
    w = torch.zeros(G, 1, k, k, dtype=torch.float64, requires_grad=True)
    out = torch.nn.functional.conv2d(xd, w, None, 1, k // 2, 1, G)
    (exact,) = torch.autograd.grad(out, w, g.double())
    assert _rel_to_abs_sum(dw_weight_grad(g, x, k, 1), exact, exact.abs()) <= BOUND
