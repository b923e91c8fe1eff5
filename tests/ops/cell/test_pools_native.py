"""fastadl/ops/cell/cpu/pools.py: the C++ 3×3 pools (stride 1, padding 1) and their backward equal
torch's max pool and average pool (count_include_pad=False) on odd and tiny maps, ties and
both dtypes included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastadl.ops.cell.cpu.pools import pool_rows_native, pools_grad_native, pools_native_ok

CL = torch.channels_last


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("N, C, H, W", [(1, 3, 1, 1), (2, 5, 3, 4), (3, 17, 7, 5), (2, 8, 2, 2)])
@pytest.mark.parametrize("kinds, with_x", [(("max", "avg"), True), (("avg", "max"), False),
                                           (("avg",), True), (("max",), False)])  # fmt: skip
def test_pools_and_gradients_match_torch(N, C, H, W, kinds, with_x, dtype):
    gen = torch.Generator().manual_seed(N * C + H * W)
    x = torch.randn(N, C, H, W, generator=gen, dtype=dtype)
    x[..., 0, :] = x[..., -1, :].clone()  # ties between taps: the first in window order wins
    if not pools_native_ok(x, kinds):
        pytest.skip("the C++ kernels did not build on this machine (see the warning)")
    Ab, x_cl, idx = pool_rows_native(x, kinds, with_x)
    xr = x.clone().requires_grad_(True)
    ops = {"max": lambda t: F.max_pool2d(t, 3, 1, 1),
           "avg": lambda t: F.avg_pool2d(t, 3, 1, 1, count_include_pad=False)}  # fmt: skip
    want = [ops[k](xr) for k in kinds]
    for i, w in enumerate(want):
        torch.testing.assert_close(Ab[i * N : (i + 1) * N], w.detach())
    if with_x:
        torch.testing.assert_close(Ab[len(kinds) * N :], x)
    assert Ab.is_contiguous(memory_format=CL) and x_cl.is_contiguous(memory_format=CL)
    gs = [torch.randn(w.shape, generator=gen, dtype=dtype) for w in want]
    (gx,) = torch.autograd.grad(want, xr, gs)
    gps = torch.stack([g.permute(0, 2, 3, 1).reshape(-1, C) for g in gs])
    got = pools_grad_native(gps, kinds, idx, (N, H, W), None)
    torch.testing.assert_close(got, gx.permute(0, 2, 3, 1).reshape(-1, C))
    base = torch.randn(got.shape, generator=gen, dtype=dtype)
    acc = pools_grad_native(gps, kinds, idx, (N, H, W), base.clone())
    torch.testing.assert_close(acc, base + got)
