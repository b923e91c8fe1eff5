"""fastadl/ops/cell/cpu/dw_crop.py: the depthwise weight gradient equals autograd's on every path it
takes (the C++ kernel; without it 1×1 crops, shifted windows, swapped-axes convs, oneDNN),
odd and tiny maps included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fastadl.ops.cell.cpu.dw_crop as dw_crop
from fastadl.ops.cell.cpu.dw_crop import dw_weight_grad_cropped as dw_weight_grad

pytestmark = pytest.mark.numerics  # float32 sums against autograd's (scripts/test_avx2.sh)


@pytest.mark.parametrize("route", ["native", "aten"])
@pytest.mark.parametrize("H, W", [(1, 1), (2, 2), (1, 5), (3, 4), (4, 4), (7, 5), (16, 16)])
@pytest.mark.parametrize("k, d", [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_depthwise_weight_grad_matches_autograd(H, W, k, d, route, monkeypatch):
    if route == "aten":
        monkeypatch.setattr(dw_crop, "NATIVE_WGRAD_MAX_PIXELS", 0)
    gen = torch.Generator().manual_seed(H * 100 + W * 10 + k + d)
    G = 6
    # float64: the sums run in different orders; what is checked is which products are summed
    x, g = (torch.randn(3, G, H, W, generator=gen, dtype=torch.float64) for _ in range(2))
    x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    w = torch.randn(G, 1, k, k, generator=gen, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x, w, None, 1, d * (k - 1) // 2, d, G)
    (expected,) = torch.autograd.grad(out, w, g)
    torch.testing.assert_close(dw_weight_grad(g, x, k, d), expected)
