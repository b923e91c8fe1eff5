"""Every Triton kernel at the smallest shapes it accepts, bounds-checked.

Under the interpreter (CPU) tests/conftest.py installs fastadl/kernels/triton/bounds_check.py
for the whole suite: a load or store outside the launch's tensors raises instead of silently
corrupting the heap. These tests check that the checker catches such accesses, then run each kernel family
and the `triton` mixed-op backend where tile edges, masks and channel blocks are most likely to
overrun: C = 1, 2, 3 (below any channel block), 1×1 and 2×2 maps, odd sizes, stride 2 and
partial channels, comparing outputs and gradients with torch as well.
"""

import os

import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from fastadl import MixedOp, convert_mixed_ops
from fastadl.kernels.triton import bounds_check
from fastadl.ops.triton.functions import dwconv, edge_dwconv_multi, pool3x3, weighted_sum
from tests.ops.test_backends import triton_skip_reason

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
interpreted_only = pytest.mark.skipif(not INTERPRET, reason="the checker patches the interpreter")
SMALL = [(1, 1, 1, 1), (2, 2, 2, 2), (1, 3, 1, 2), (2, 3, 3, 5), (1, 2, 5, 1)]  # N, C, H, W
TOL = dict(rtol=1e-4, atol=1e-4)


@triton.jit
def _shifted_copy(src, dst, n, shift, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(dst + offs + shift, tl.load(src + offs, mask=offs < n), mask=offs < n)


@triton.jit
def _shifted_read(src, dst, n, shift, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(dst + offs, tl.load(src + offs + shift, mask=offs < n), mask=offs < n)


@interpreted_only
def test_suite_checks_every_interpreted_launch():
    assert bounds_check.installed()


@interpreted_only
@pytest.mark.parametrize(
    ("kernel", "shift", "kind", "where"),
    [
        (_shifted_copy, 1, "store", "element offset 8 of 'dst'"),  # one past the end
        (_shifted_read, -1, "load", "element offset -1 of 'src'"),  # one before the start
    ],
)
def test_checker_stops_an_access_outside_the_tensors(kernel, shift, kind, where):
    src, dst = torch.arange(8.0), torch.zeros(8)
    kernel[(1,)](src, dst, 7, 0, BLOCK=8)  # in bounds: fine
    with pytest.raises(Exception, match=f"{kernel.__name__}: {kind} of 1 element.*{where}"):
        kernel[(1,)](src, dst, 8, shift, BLOCK=8)
    if kind == "store":  # raised before the store: nothing was written
        torch.testing.assert_close(dst, torch.arange(8.0).masked_fill(torch.arange(8) == 7, 0))


@interpreted_only
def test_checker_ignores_masked_lanes():
    src, dst = torch.arange(4.0), torch.zeros(4)
    _shifted_copy[(1,)](src, dst, 4, 0, BLOCK=16)  # 12 lanes past the end, all masked
    torch.testing.assert_close(dst, src)


def _grads(fn, inputs, g):
    inputs = [t.clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    return [out, *torch.autograd.grad(out, inputs, g)]


def _nhwc(x):
    return x.permute(0, 2, 3, 1)


@pytest.mark.parametrize("shape", SMALL)
@pytest.mark.parametrize(("k", "dilation"), [(3, 1), (5, 2)])
def test_dwconv_at_the_smallest_shapes(shape, k, dilation):
    x = torch.randn(shape, device=DEVICE)
    w = torch.randn(shape[1], 1, k, k, device=DEVICE)
    g = torch.randn(shape, device=DEVICE)
    pad = dilation * (k - 1) // 2

    def ours(x, w):
        return dwconv(_nhwc(x), w, dilation, True).permute(0, 3, 1, 2)

    def torchs(x, w):
        return F.conv2d(F.relu(x), w, padding=pad, dilation=dilation, groups=x.shape[1])

    for a, b in zip(_grads(ours, [x, w], g), _grads(torchs, [x, w], g), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("shape", SMALL)
@pytest.mark.parametrize("edges", [1, 3])
def test_edge_dwconv_at_the_smallest_shapes(shape, edges):
    C = shape[1]
    specs = ((3, 1), (5, 1), (3, 2), (5, 2))
    x = torch.randn(shape, device=DEVICE)
    banks = [torch.randn(edges, C, k * k, device=DEVICE) for k, _ in specs]
    g = torch.randn(edges, 4, *_nhwc(x).shape, device=DEVICE)

    def ours(x, *banks):
        return edge_dwconv_multi(_nhwc(x), *banks)

    def torchs(x, *banks):
        per_edge = [
            torch.stack([
                _nhwc(F.conv2d(F.relu(x), b[e].view(C, 1, k, k), padding=d * (k - 1) // 2,
                               dilation=d, groups=C))
                for b, (k, d) in zip(banks, specs, strict=True)
            ])
            for e in range(edges)
        ]  # fmt: skip
        return torch.stack(per_edge)

    got, want = _grads(ours, [x, *banks], g), _grads(torchs, [x, *banks], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("shape", SMALL)
def test_pool3x3_at_the_smallest_shapes(shape):
    x = torch.randn(shape, device=DEVICE).requires_grad_()
    mx, av, _ = pool3x3(_nhwc(x))
    want_mx = _nhwc(F.max_pool2d(x, 3, 1, 1))
    want_av = _nhwc(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
    torch.testing.assert_close(mx, want_mx, **TOL)
    torch.testing.assert_close(av, want_av, **TOL)
    g1, g2 = torch.randn_like(mx), torch.randn_like(av)
    got = torch.autograd.grad((mx * g1).sum() + (av * g2).sum(), x)[0]
    want = torch.autograd.grad((want_mx * g1).sum() + (want_av * g2).sum(), x)[0]
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("shape", [(1,), (2, 1, 1, 1), (1, 3, 2, 2), (2, 3, 3, 5)])
def test_weighted_sum_at_the_smallest_shapes(shape):
    ys = torch.randn(3, *shape, device=DEVICE)
    w = torch.randn(3, device=DEVICE)
    g = torch.randn(shape, device=DEVICE)
    got = _grads(weighted_sum, [ys, w], g)
    want = _grads(lambda ys, w: torch.einsum("k,k...->...", w, ys), [ys, w], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize(
    ("C", "size", "stride", "partial"),
    [
        (1, (1, 1), 1, 1),  # one channel on a 1×1 map
        (2, (2, 2), 1, 1),
        (3, (3, 5), 1, 1),  # odd channels and sizes
        (2, (2, 2), 2, 1),  # stride 2 down to 1×1 (the stride-2 branches run the reference)
        (3, (5, 3), 2, 1),
        (4, (3, 3), 1, 2),  # partial channels: 2 of 4 mixed
        (6, (2, 3), 2, 3),
    ],
)
def test_triton_mixed_op_at_the_smallest_shapes(C, size, stride, partial):
    reason = triton_skip_reason(False)
    if reason:
        pytest.skip(reason)
    if stride == 2 and C // partial < 2:
        pytest.skip("skip_connect at stride 2 needs 2 mixed channels")  # MixedOp refuses it
    torch.manual_seed(0)
    ref = MixedOp(C, stride, backend="reference", partial_channels=partial).to(DEVICE)
    fast = convert_mixed_ops(MixedOp(C, stride, backend="reference", partial_channels=partial),
                             "triton").to(DEVICE)  # fmt: skip
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, C, *size, device=DEVICE)
    w = torch.randn(len(ref.primitives), device=DEVICE).softmax(0)
    out_ref = ref(x, w)
    g = torch.randn_like(out_ref)

    def grads(op):
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        out = op(xs, ws)
        params = [p for p in op.parameters() if p.requires_grad]
        return [out, *torch.autograd.grad(out, [xs, ws, *params], g)]

    for a, b in zip(grads(fast), grads(ref), strict=True):
        torch.testing.assert_close(a, b, **TOL)
