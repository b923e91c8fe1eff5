"""Depthwise-conv kernels (fastadl/kernels/triton/dwconv.py) vs F.conv2d(groups=C): output, dx, dweight."""

import pytest
import torch
import torch.nn.functional as F

from fastadl.kernels.triton import dwconv as kernel
from fastadl.kernels.triton import nhwc
from fastadl.ops.triton.functions import dwconv

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)

SHAPES = [
    (1, 5, 13, 17),  # odd size; C = 5 < the channel block
    (3, 70, 1, 1),  # 1×1 maps: every tap but the centre is padding; C spans two channel blocks
]


def _reference(x, w, dilation, relu):
    """F.conv2d on NCHW, with the same ReLU-on-input option."""
    k = w.shape[-1]
    return F.conv2d(F.relu(x) if relu else x, w, padding=dilation * (k - 1) // 2,
                    dilation=dilation, groups=x.shape[1])  # fmt: skip


def _grads(fn, x, w, g):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = fn(x, w)
    return (out, *torch.autograd.grad(out, (x, w), g))


def _triton(dilation, relu):
    def fn(x, w):  # NCHW in and out, NHWC inside
        return dwconv(x.permute(0, 2, 3, 1), w, dilation, relu).permute(0, 3, 1, 2)

    return fn


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k, dilation", [(3, 1), (5, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("relu", [True, False])
def test_dwconv_matches_conv2d(shape, k, dilation, relu):
    x = torch.randn(shape, device=DEVICE)
    w = torch.randn(shape[1], 1, k, k, device=DEVICE)
    g = torch.randn(shape, device=DEVICE)
    got = _grads(_triton(dilation, relu), x, w, g)
    expected = _grads(lambda x, w: _reference(x, w, dilation, relu), x, w, g)
    for name, a, b in zip(("out", "dx", "dweight"), got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("k, dilation", [(3, 1), (5, 2)])
def test_weight_grad_reduction_over_several_programs(k, dilation):
    """``programs`` forces several partial rows; the last program's tiles run past the pixels."""
    shape = (3, 6, 7, 11)  # 231 pixels in 15 tiles of 16: 4 rows of 4 tiles, the 16th all tail
    N, C, H, W = shape
    bp, bc = nhwc.blocks(C, kernel._WGRAD_CFG[0])
    grid, tiles = nhwc.reduce_grid(N * H * W, C, bp, bc, torch.device(DEVICE), programs=4)
    assert grid[0] == 4 and grid[0] * tiles * bp > N * H * W
    x, g = torch.randn(shape, device=DEVICE), torch.randn(shape, device=DEVICE)
    w = torch.randn(C, 1, k, k, device=DEVICE)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    expected = torch.autograd.grad(_reference(xr, wr, dilation, True), wr, g)[0]
    nhwc_ = (t.permute(0, 2, 3, 1) for t in (g, x))
    got = kernel.dwconv_bwd_weight(*nhwc_, w, dilation, relu=True, programs=4)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_activations_with_float32_filters(dtype):
    """What autocast hands the kernels: half-precision x and dout, float32 filters. Products
    accumulate in float32, so the result is the float32 conv of the rounded inputs up to the
    output's rounding."""
    x = torch.randn(2, 4, 7, 9, device=DEVICE).to(dtype)
    g = torch.randn(2, 4, 7, 9, device=DEVICE).to(dtype)
    w = torch.randn(4, 1, 5, 5, device=DEVICE)
    got = _grads(_triton(2, True), x, w, g)
    expected = _grads(lambda x, w: _reference(x, w, 2, True), x.float(), w, g.float())
    assert got[0].dtype == got[1].dtype == dtype and got[2].dtype == torch.float32
    for name, a, b in zip(("out", "dx", "dweight"), got, expected, strict=True):
        torch.testing.assert_close(a.float(), b, rtol=2e-2, atol=2e-2 * b.abs().max().item(),
                                   msg=lambda m, n=name: f"{n}: {m}")  # fmt: skip


def test_dwconv_is_deterministic():
    x, g = torch.randn(2, 5, 7, 9, device=DEVICE), torch.randn(2, 5, 7, 9, device=DEVICE)
    w = torch.randn(5, 1, 5, 5, device=DEVICE)
    first, second = (_grads(_triton(2, True), x, w, g) for _ in range(2))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_dwconv_rejects_unsupported_filters():
    x = torch.randn(1, 4, 4, 3, device=DEVICE)
    with pytest.raises(ValueError, match="dilation"):
        dwconv(x, torch.randn(3, 1, 7, 7, device=DEVICE))
    with pytest.raises(ValueError, match="dilation"):
        dwconv(x, torch.randn(3, 1, 3, 3, device=DEVICE), dilation=3)
