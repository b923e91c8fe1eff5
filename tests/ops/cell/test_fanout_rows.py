"""fastadl/ops/cell/cpu/rows.py: the C++ row kernels equal their ATen twins and the plain
formulas, on strided, broadcast and permuted views like the fan-out group's, float32 and
float64, odd sizes."""

from __future__ import annotations

import pytest
import torch

from fastadl.kernels.cpu import accepts
from fastadl.ops.cell.cpu import rows as fr

pytestmark = pytest.mark.numerics  # float32 sums against ATen's (scripts/test_avx2.sh)


@pytest.fixture(autouse=True)
def _need_kernels():
    if not accepts(torch.zeros(1)):
        pytest.skip("the C++ kernels did not build on this machine (see the warning)")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


DTYPES = [torch.float32, torch.float64]
SIZES = [(1, 7, 1, 1, 5), (2, 9, 3, 4, 8), (3, 4, 2, 5, 17)]  # P, Q, n, E, C


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("P, Q, n, E, C", SIZES)
def test_bn_forward_normalises_rows_in_place(P, Q, n, E, C, dtype):
    base = torch.randn(P, Q, n + 1, E, C, generator=_gen(P + Q), dtype=dtype) * 3 + 1
    z = base[:, :, 1:]  # a strided view, as Z1's final rows are
    z_ref = z.clone()
    mean_want = z.mean(1)
    got = fr._bn_forward_native(z, 1e-5)
    want = fr._bn_forward_aten(z_ref, 1e-5)
    for a, b in zip((z, *got), (z_ref, *want), strict=True):
        torch.testing.assert_close(a, b, **_tol(dtype))
    torch.testing.assert_close(got[0], mean_want, **_tol(dtype))
    torch.testing.assert_close(z.mean(1), torch.zeros_like(got[0]), **_tol(dtype))
    torch.testing.assert_close(z.pow(2).mean(1), got[1] * got[2] ** 2, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("P, Q, n, E, C", SIZES)
@pytest.mark.parametrize("shared", [False, True])
def test_mix_rows(P, Q, n, E, C, dtype, shared):
    gen = _gen(n * 10 + E)
    if shared:  # a pool row shared by every edge: stride 0 along E
        x = torch.randn(n, P, Q, 1, C, generator=gen, dtype=dtype).permute(1, 2, 0, 3, 4)
        x = x.expand(P, Q, n, E, C)
    else:
        x = torch.randn(P, Q, n, E, C, generator=gen, dtype=dtype)
    w = torch.randn(n, E + 3, generator=gen, dtype=dtype)[:, 1 : E + 1]
    start = torch.randn(P, Q, E, C, generator=gen, dtype=dtype)
    for accumulate in (False, True):
        out = start.clone()
        fr._mix_rows_native(out, x, w, accumulate)
        want = (start if accumulate else 0) + (x * w.view(1, 1, n, E, 1)).sum(2)
        torch.testing.assert_close(out, want, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("P, Q, n, E, C", SIZES)
@pytest.mark.parametrize("variant", ["final rows", "relu first stage", "in place"])
def test_bn_backward_is_batchnorms_backward(P, Q, n, E, C, dtype, variant):
    gen = _gen(P * Q + n)
    z = torch.randn(P, Q, n, E, C, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n, E, generator=gen, dtype=torch.float64)
    mean = z.mean(1, keepdim=True)
    var = ((z - mean) ** 2).mean(1, keepdim=True)
    xhat = (z - mean) / (var + 1e-5).sqrt()
    g = torch.randn(P, Q, 1, E, C, generator=gen, dtype=torch.float64).expand(P, Q, n, E, C)
    if variant == "relu first stage":  # y = ReLU(x̂), upstream gradient per row, weight 1
        g = torch.randn(P, Q, n, E, C, generator=gen, dtype=torch.float64)
        (want,) = torch.autograd.grad(xhat.clamp_min(0), z, g)
    else:
        (want,) = torch.autograd.grad(xhat * w.view(1, 1, n, E, 1), z, g)
    inv = (var.squeeze(1) + 1e-5).rsqrt()
    xh, g_, inv_ = (t.detach().to(dtype) for t in (xhat, g, inv))
    mask = xh.clamp_min(0) if variant == "relu first stage" else None
    ww = None if variant == "relu first stage" else w.to(dtype)
    if variant == "in place":
        g_ = g_.contiguous()
        gz = g_
    else:
        gz = torch.empty_like(xh)
    gp = g_ if mask is None else g_ * (mask > 0)
    gsum_want = (gp * xh).sum((0, 1, 4))
    gsum = fr._bn_backward_native(g_, xh, inv_, gz, ww, mask, want_gsum=True)
    torch.testing.assert_close(gz.double(), want, rtol=1e-4 if dtype == torch.float32 else 1e-10,
                               atol=1e-4 if dtype == torch.float32 else 1e-10)  # fmt: skip
    torch.testing.assert_close(gsum, gsum_want, **_tol(dtype))
    if variant != "in place":
        ref_gz = torch.empty_like(xh)
        fr._bn_backward_aten(g_, xh, inv_, ref_gz, ww, mask, False)
        torch.testing.assert_close(gz, ref_gz, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, M, E, C", [(1, 5, 1, 3), (3, 14, 4, 8), (2, 9, 6, 17)])
def test_mix_backward(n, M, E, C, dtype):
    gen = _gen(n + M + E + C)
    x = torch.randn(n, M, C, generator=gen, dtype=dtype)
    g = torch.randn(M, E, C, generator=gen, dtype=dtype)
    w = torch.randn(n, E + 2, generator=gen, dtype=dtype)[:, 2:]
    gx, gw = fr._mix_backward_native(g, x, w, True)
    gx_ref, gw_ref = fr._mix_backward_aten(g, x, w, True)
    torch.testing.assert_close(gx, gx_ref, **_tol(dtype))
    torch.testing.assert_close(gw, gw_ref, **_tol(dtype))
    assert fr._mix_backward_native(g, x, w, False)[1] is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 7, 33])  # four-row blocks and their tails
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("C", fr.NATIVE_POINTWISE_CHANNELS)
def test_pointwise_native(M, transpose, C, dtype):
    gen = _gen(M + transpose + C)
    R, E = 3, 2
    d = torch.randn(M, R, E, C, generator=gen, dtype=dtype)
    pw = torch.randn(R, E, C, C + 1, generator=gen, dtype=dtype)[..., 1:]  # strided (out, in)
    out = torch.empty_like(d)
    assert fr.pointwise_native(d, pw, out, transpose)
    m = pw.transpose(-1, -2) if transpose else pw
    torch.testing.assert_close(out, torch.einsum("reoi,mrei->mreo", m, d), **_tol(dtype))
    assert not fr.pointwise_native(d[:, :, :, : C - 1], pw[..., 1:, 1:], out[..., 1:], transpose)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", fr.NATIVE_POINTWISE_CHANNELS)
def test_pointwise_weight_grad_native(C, dtype):
    gen = _gen(C)
    M, R, E = 13, 2, 3
    gz, d = (torch.randn(M, R, E, C, generator=gen, dtype=dtype) for _ in range(2))
    want = torch.einsum("mreo,mrei->reoi", gz, d)
    torch.testing.assert_close(fr.pointwise_weight_grad_native(gz, d), want, **_tol(dtype))
    assert fr.pointwise_weight_grad_native(gz[..., 1:], d[..., 1:]) is None
