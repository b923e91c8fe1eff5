"""Fused pool kernel (fastadl/kernels/triton/pool.py) vs max_pool2d / avg_pool2d(count_include_pad=False) and
their BatchNorm sums (shifted by the pools at pixel 0, held constant): outputs, stats, and dx
through all of them; the shift keeps the variance accurate far from zero."""

import pytest
import torch
import torch.nn.functional as F

from fastadl.kernels.triton.pool import pool3x3_bwd, pool3x3_fwd
from fastadl.ops.triton.functions import pool3x3

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)


def _reference(x):
    mx = F.max_pool2d(x, 3, 1, 1)
    av = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    m0, a0 = mx[0, :, 0, 0].detach(), av[0, :, 0, 0].detach()  # constants: triton/pool.py
    dm, da = mx - m0[:, None, None], av - a0[:, None, None]
    sums = [t.sum((0, 2, 3)) for t in (dm, dm * dm, da, da * da)]
    return mx, av, torch.stack([*sums, m0, a0])


def _triton(x):
    mx, av, stats = pool3x3(x.permute(0, 2, 3, 1))
    return mx.permute(0, 3, 1, 2), av.permute(0, 3, 1, 2), stats


def _grads(fn, x, gs):
    x = x.clone().requires_grad_()
    outs = fn(x)
    loss = sum((o * g).sum() for o, g in zip(outs, gs, strict=True))
    return (*outs, torch.autograd.grad(loss, x)[0])


def _inputs(shape, ties):
    if ties:  # few distinct values: many windows hold their max twice; torch keeps the first
        return torch.randint(-2, 3, shape, device=DEVICE).float()
    return torch.randn(shape, device=DEVICE)


@pytest.mark.parametrize(
    "shape",
    [
        (1, 5, 13, 17),  # odd size, C below the channel block
        (3, 70, 1, 1),  # 1×1 maps: windows are the centre alone; two channel blocks
        (3, 4, 2, 5),  # two rows: every window is clipped
    ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_pool_matches_torch(shape, ties):
    x = _inputs(shape, ties)
    C = shape[1]
    gs = (torch.randn(shape, device=DEVICE), torch.randn(shape, device=DEVICE),
          torch.randn(6, C, device=DEVICE) / 10)  # fmt: skip
    got, expected = _grads(_triton, x, gs), _grads(_reference, x, gs)
    for name, a, b in zip(("max", "avg", "stats", "dx"), got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_pool_backward_without_stats_gradient():
    x = torch.randn(3, 5, 7, 9, device=DEVICE)
    dmax, davg = torch.randn_like(x), torch.randn_like(x)
    xr = x.clone().requires_grad_()
    ref_out = F.max_pool2d(xr, 3, 1, 1), F.avg_pool2d(xr, 3, 1, 1, count_include_pad=False)
    expected = torch.autograd.grad(ref_out, xr, (dmax, davg))[0]
    mx, av, stats, arg = pool3x3_fwd(x.permute(0, 2, 3, 1))
    nhwc = (dmax.permute(0, 2, 3, 1), davg.permute(0, 2, 3, 1))
    dx = pool3x3_bwd(*nhwc, None, mx, av, arg, stats)
    torch.testing.assert_close(dx.permute(0, 3, 1, 2), expected, rtol=1e-5, atol=1e-5)


def test_pool_is_deterministic():
    x = torch.randn(3, 5, 13, 17, device=DEVICE)
    gs = (torch.randn_like(x), torch.randn_like(x), torch.randn(6, 5, device=DEVICE))
    first, second = (_grads(_triton, x, gs) for _ in range(2))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_variance_from_the_sums_is_accurate_far_from_zero():
    """Maps whose pooled values sit far from zero with a small spread (a 3×3 pool of a 2×2 map
    is nearly constant per image): the BatchNorm variance from the shifted sums keeps float32
    precision, where Σp²/n − (Σp/n)² would cancel away most of it."""
    x = 50.0 + 0.01 * torch.randn(4, 3, 2, 2, device=DEVICE)
    mx, av, stats = pool3x3(x.permute(0, 2, 3, 1))
    n = x.numel() // x.shape[1]
    for p, (s1, s2) in ((mx, stats[0:2]), (av, stats[2:4])):
        var = s2 / n - (s1 / n) ** 2
        expected = p.double().permute(3, 0, 1, 2).reshape(3, -1).var(1, unbiased=False)
        torch.testing.assert_close(var.double(), expected, rtol=1e-3, atol=1e-10)
