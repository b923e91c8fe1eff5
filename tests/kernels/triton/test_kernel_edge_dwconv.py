"""Fused first stage (fastadl/kernels/triton/edge_dwconv.py) vs F.conv2d(ReLU(x)) per filter: one edge (four
filters) and E edges reading one input (E·4 filters): outputs, dx and every filter gradient,
including weight-gradient reductions spread over several programs with tail tiles."""

import pytest
import torch
import torch.nn.functional as F

from fastadl.kernels.triton import edge_dwconv as kernel
from fastadl.kernels.triton import nhwc
from fastadl.ops.triton.functions import edge_dwconv, edge_dwconv_multi

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)

BRANCHES = ((3, 1), (5, 1), (3, 2), (5, 2))  # sep 3×3, sep 5×5, dil 3×3, dil 5×5 first stages
NAMES = ("out", "dx", "dw_s3", "dw_s5", "dw_d3", "dw_d5")


def _four_convs(x, ws):
    """x: (N, C, H, W); ws: four (C, 1, k, k) filters → (4, N, C, H, W)."""
    r = F.relu(x)
    return torch.stack([
        F.conv2d(r, w, padding=d * (k - 1) // 2, dilation=d, groups=x.shape[1])
        for w, (k, d) in zip(ws, BRANCHES, strict=True)
    ])  # fmt: skip


def _reference_multi(x, *banks):
    """x: (N, C, H, W); banks: four (E, C, k·k) → (E, 4, N, H, W, C), as edge_dwconv_multi."""
    C = x.shape[1]
    per_edge = []
    for e in range(banks[0].shape[0]):
        ws = [b[e].view(C, 1, k, k) for b, (k, _) in zip(banks, BRANCHES, strict=True)]
        per_edge.append(_four_convs(x, ws).permute(0, 1, 3, 4, 2))
    return torch.stack(per_edge)


def _triton_multi(x, *banks):
    return edge_dwconv_multi(x.permute(0, 2, 3, 1), *banks)


def _grads(fn, x, ws, g):
    x = x.clone().requires_grad_()
    ws = [w.clone().requires_grad_() for w in ws]
    out = fn(x, *ws)
    return (out, *torch.autograd.grad(out, (x, *ws), g))


def _assert_all_close(got, expected):
    for name, a, b in zip(NAMES, got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def _banks(E, C):
    return [torch.randn(E, C, k * k, device=DEVICE) for k, _ in BRANCHES]


@pytest.mark.parametrize(
    "shape",
    [
        (1, 5, 13, 17),  # odd size, C below the channel block
        (3, 3, 2, 9),  # maps thinner than the 9×9 dilated window: most taps are padding
        (2, 70, 1, 1),  # 1×1 maps; C spans two channel blocks
    ],
)
def test_edge_dwconv_matches_four_convs(shape):
    C = shape[1]
    x = torch.randn(shape, device=DEVICE)
    ws = [torch.randn(C, 1, k, k, device=DEVICE) for k, _ in BRANCHES]
    g = torch.randn(4, *shape, device=DEVICE)

    def triton(x, *ws):
        return edge_dwconv(x.permute(0, 2, 3, 1), *ws).permute(0, 1, 4, 2, 3)

    _assert_all_close(_grads(triton, x, ws, g), _grads(lambda x, *w: _four_convs(x, w), x, ws, g))


@pytest.mark.parametrize(
    "E, shape",
    [
        (1, (2, 3, 5, 7)),  # one edge through the multi op
        (3, (1, 5, 6, 9)),  # one program holds all three sets (E_BLOCK = 4, one masked)
        (5, (2, 2, 3, 4)),  # a 5-block cell's fan-out of state 0/1: two set blocks
    ],
)
def test_edge_dwconv_multi_matches_reference(E, shape):
    x = torch.randn(shape, device=DEVICE)
    banks = _banks(E, shape[1])
    N, C, H, W = shape
    g = torch.randn(E, 4, N, H, W, C, device=DEVICE)
    got = _grads(_triton_multi, x, banks, g)
    assert got[0].shape == (E, 4, N, H, W, C) and got[0].is_contiguous()
    _assert_all_close(got, _grads(_reference_multi, x, banks, g))


@pytest.mark.parametrize(
    "E, shape, programs",
    [
        (1, (3, 5, 7, 9), 4),  # 189 pixels in 24 tiles: 4 rows of 6, the last tile half empty
        (3, (2, 4, 5, 7), 3),  # 70 pixels in 9 tiles: 3 rows of 3; three sets on grid axis 2
    ],
)
def test_weight_grad_reduction_over_several_programs(E, shape, programs):
    """The launcher's ``programs`` forces several partial rows, so the second-stage sum and the
    programs' tile ranges (the last one running past the pixels) are exercised."""
    N, C, H, W = shape
    bp, bc = nhwc.blocks(C, kernel._WGRAD_CFG[0])
    grid, tiles = nhwc.reduce_grid(N * H * W, C, bp, bc, torch.device(DEVICE), E, programs)
    assert grid[0] == programs and grid[0] * tiles * bp > N * H * W  # several rows, a tail
    x = torch.randn(shape, device=DEVICE)
    banks = _banks(E, C)
    g = torch.randn(E, 4, N, H, W, C, device=DEVICE)
    xr = x.clone().requires_grad_()
    br = [b.clone().requires_grad_() for b in banks]
    expected = torch.autograd.grad(_reference_multi(xr, *br), (xr, *br), g)
    dx, dw = kernel.edge_dwconv_bwd(g, x.permute(0, 2, 3, 1), *banks, programs=programs)
    got = (dx.permute(0, 3, 1, 2), *kernel.split_filter_grads(dw, E, C))
    for name, a, b in zip(NAMES[1:], got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_bfloat16_activations_with_float32_filters():
    """Autocast's inputs: bf16 x and dy, float32 filters (float32 accumulation inside)."""
    x = torch.randn(2, 3, 5, 7, device=DEVICE).bfloat16()
    g = torch.randn(2, 4, 2, 5, 7, 3, device=DEVICE).bfloat16()
    banks = _banks(2, 3)
    got = _grads(_triton_multi, x, banks, g)
    expected = _grads(_reference_multi, x.float(), banks, g.float())
    for name, a, b in zip(NAMES, got, expected, strict=True):
        atol = 2e-2 * b.abs().max().item()
        torch.testing.assert_close(
            a.float(), b, rtol=2e-2, atol=atol, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_edge_dwconv_is_deterministic():
    x, g = torch.randn(2, 3, 5, 7, device=DEVICE), torch.randn(2, 4, 2, 5, 7, 3, device=DEVICE)
    banks = _banks(2, 3)
    first, second = (_grads(_triton_multi, x, banks, g) for _ in range(2))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_edge_dwconv_multi_rejects_mismatched_banks():
    x = torch.randn(1, 4, 4, 3, device=DEVICE)
    banks = _banks(2, 3)
    banks[3] = torch.randn(3, 3, 25, device=DEVICE)  # E = 3 where the others have E = 2
    with pytest.raises(ValueError, match="one E"):
        edge_dwconv_multi(x, *banks)
