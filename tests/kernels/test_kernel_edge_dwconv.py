"""Fused first stage (kernels/edge_dwconv.py) vs four F.conv2d(ReLU(x)): outputs, dx, 4 dweights."""

import pytest
import torch
import torch.nn.functional as F

from fastadl.ops.triton_functions import edge_dwconv

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)

BRANCHES = ((3, 1), (5, 1), (3, 2), (5, 2))  # sep 3×3, sep 5×5, dil 3×3, dil 5×5 first stages


def _reference(x, *ws):
    r = F.relu(x)
    return torch.stack([
        F.conv2d(r, w, padding=d * (k - 1) // 2, dilation=d, groups=x.shape[1])
        for w, (k, d) in zip(ws, BRANCHES, strict=True)
    ])  # fmt: skip


def _triton(x, *ws):
    return edge_dwconv(x.permute(0, 2, 3, 1), *ws).permute(0, 1, 4, 2, 3)


def _grads(fn, x, ws, g):
    x = x.clone().requires_grad_()
    ws = [w.clone().requires_grad_() for w in ws]
    out = fn(x, *ws)
    return (out, *torch.autograd.grad(out, (x, *ws), g))


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
    got, expected = _grads(_triton, x, ws, g), _grads(_reference, x, ws, g)
    names = ("out", "dx", "dw_s3", "dw_s5", "dw_d3", "dw_d5")
    for name, a, b in zip(names, got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_edge_dwconv_is_deterministic():
    x, g = torch.randn(3, 5, 7, 9, device=DEVICE), torch.randn(4, 3, 5, 7, 9, device=DEVICE)
    ws = [torch.randn(5, 1, k, k, device=DEVICE) for k, _ in BRANCHES]
    first, second = (_grads(_triton, x, ws, g) for _ in range(2))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
