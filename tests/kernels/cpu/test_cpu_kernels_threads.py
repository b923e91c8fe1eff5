"""The C++ kernels' large calls split between torch's OpenMP threads
(fastadl/kernels/cpu/parallel.h): they share torch's thread count, give bit-identical results
on one thread and on two, and still equal their ATen twins. Sizes are above the kernels'
parallel threshold (each test checks that: below it both runs would be one thread's) and odd,
so the split ranges are uneven."""

from __future__ import annotations

import pytest
import torch

from fastadl.kernels import cpu as cpu_kernels
from fastadl.ops.cell.cpu import rows as fr
from fastadl.ops.cell.cpu.dwconv import dw_weight_grad_cpp as dw_weight_grad
from fastadl.ops.cell.small_work import torch_threads

P, Q, N_ROWS, E, C = 3, 523, 4, 5, 8  # 250k values: well above the threshold
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def _need_openmp_kernels():
    if not cpu_kernels.accepts(torch.zeros(1)):
        pytest.skip("the C++ kernels did not build on this machine (see the warning)")
    if cpu_kernels.parallel_threads() == 0:
        pytest.skip("the C++ kernels were built without OpenMP (the compiler refused -fopenmp)")


def _on_threads(n: int, fn):
    with torch_threads(n):
        return fn()


def _same_on_one_and_two_threads(work: int, fn) -> list[torch.Tensor]:
    """fn() → tensors; runs it on 1 and 2 threads, asserts the results are bit-identical.
    work: the elements the call touches by the kernel's own count, which must reach the
    threshold where the second thread takes part."""
    assert work >= cpu_kernels.parallel_min_work(), "too small to run on two threads"
    one, two = _on_threads(1, fn), _on_threads(2, fn)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b), "the kernel's result depends on the thread count"
    return two


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_kernels_follow_torchs_thread_count():
    assert _on_threads(1, cpu_kernels.parallel_threads) == 1
    assert _on_threads(2, cpu_kernels.parallel_threads) == 2


def test_bn_forward_threads():
    base = torch.randn(P, Q, N_ROWS + 1, E, C, generator=_gen(0)) * 3 + 1

    def run():
        z = base.clone()[:, :, 1:]  # strided, as Z1's final rows are
        mean, var, inv = fr._bn_forward_native(z, 1e-5)
        return [z, mean, var, inv]

    got = _same_on_one_and_two_threads(P * Q * N_ROWS * E * C, run)
    z_ref = base.clone()[:, :, 1:]
    want = fr._bn_forward_aten(z_ref, 1e-5)
    for a, b in zip(got, (z_ref, *want), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("relu", [False, True])
def test_bn_backward_threads(relu):
    gen = _gen(1)
    z = torch.randn(P, Q, N_ROWS, E, C, generator=gen)
    xh = (z - z.mean(1, keepdim=True)) / z.var(1, unbiased=False, keepdim=True).add(1e-5).sqrt()
    inv = torch.rand(P, N_ROWS, E, C, generator=gen) + 0.5
    g = torch.randn(P, Q, N_ROWS, E, C, generator=gen)
    w = None if relu else torch.randn(N_ROWS, E, generator=gen)
    mask = xh.clamp_min(0) if relu else None

    def run():
        gz = torch.empty_like(xh)
        gsum = fr._bn_backward_native(g, xh, inv, gz, w, mask, want_gsum=True)
        return [gz, gsum]

    gz, gsum = _same_on_one_and_two_threads(2 * P * Q * N_ROWS * E * C, run)
    ref = torch.empty_like(xh)
    fr._bn_backward_aten(g, xh, inv, ref, w, mask, False)
    torch.testing.assert_close(gz, ref, **TOL)
    gp = g if mask is None else g * (mask > 0)
    torch.testing.assert_close(gsum, (gp * xh).sum((0, 1, 4)), rtol=1e-4, atol=1e-3)


def test_mix_rows_threads():
    gen = _gen(2)
    x = torch.randn(P, Q, N_ROWS, E, C, generator=gen)
    w = torch.randn(N_ROWS, E, generator=gen)
    start = torch.randn(P, Q, E, C, generator=gen)

    def run():
        out = start.clone()
        fr._mix_rows_native(out, x, w, True)
        return [out]

    (out,) = _same_on_one_and_two_threads(P * Q * (N_ROWS + 1) * E * C, run)
    torch.testing.assert_close(out, start + (x * w.view(1, 1, N_ROWS, E, 1)).sum(2), **TOL)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("channels", fr.NATIVE_POINTWISE_CHANNELS)
def test_pointwise_threads(transpose, channels):
    gen = _gen(3)
    M, R = 1031, 4  # not a multiple of the 64-row blocks nor of the 4-row step
    d = torch.randn(M, R, E, channels, generator=gen)
    pw = torch.randn(R, E, channels, channels, generator=gen)

    def run():
        out = torch.empty_like(d)
        assert fr.pointwise_native(d, pw, out, transpose)
        return [out]

    (out,) = _same_on_one_and_two_threads(M * R * E * channels * 2, run)
    m = pw.transpose(-1, -2) if transpose else pw
    torch.testing.assert_close(out, torch.einsum("reoi,mrei->mreo", m, d), **TOL)


@pytest.mark.parametrize("channels", fr.NATIVE_POINTWISE_CHANNELS)
def test_pointwise_weight_grad_threads(channels):
    gen = _gen(4)
    M, R = 1031, 4
    gz, d = (torch.randn(M, R, E, channels, generator=gen) for _ in range(2))
    work = M * R * E * channels * 2
    (got,) = _same_on_one_and_two_threads(work, lambda: [fr.pointwise_weight_grad_native(gz, d)])
    torch.testing.assert_close(got, torch.einsum("mreo,mrei->reoi", gz, d), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k, dilation", [(1, 1), (3, 1), (3, 2), (5, 1)])
def test_depthwise_weight_grad_threads(k, dilation):
    # 70 channels: 16-float vectors at 0, 16, 32, 48 and an overlapping last one at 54, whose
    # shared channels only the vector before it writes; 2 repeats of x (R = 2)
    B, Cx, R, H, W = 4, 70, 2, 17, 19
    gen = _gen(5 + k)
    x = torch.randn(B, Cx, H, W, generator=gen).contiguous(memory_format=torch.channels_last)
    g = torch.randn(B, R * Cx, H, W, generator=gen).contiguous(memory_format=torch.channels_last)
    work = B * H * W * R * Cx * k * k
    (got,) = _same_on_one_and_two_threads(work, lambda: [dw_weight_grad(g, x, k, dilation)])
    xr = x.repeat(1, R, 1, 1).requires_grad_(True)
    w = torch.zeros(R * Cx, 1, k, k, requires_grad=True)
    pad = (k - 1) // 2 * dilation
    out = torch.nn.functional.conv2d(xr, w, None, 1, pad, dilation, R * Cx)
    (want,) = torch.autograd.grad(out, w, g)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
