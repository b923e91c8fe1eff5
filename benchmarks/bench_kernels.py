"""Each Triton kernel beside its PyTorch equivalent, forward and forward+backward.

    pytest benchmarks --benchmark-only                       # one table per shape
    pytest benchmarks --benchmark-only --benchmark-group-by=group,param:kernel   # finer tables

Shapes are Auto-DeepLab search edges (321×321 crops, batch 2, F = 8 → C = F·s/4 at level s), one
benchmark group per shape. The Triton cases need CUDA and skip on CPU (the interpreter is for
tests, not timing); the torch baselines still run, so the suite works on a laptop.

extra_info["GB/s"] is an effective bandwidth: the DRAM bytes the Triton kernels move for the op
(counted in each kernel module's docstring) over the median time, the same numerator for both
implementations, so it compares them directly and against the GPU's peak. On CUDA,
extra_info["peak_MiB"] is the peak memory allocated during one call.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from fastadl.ops.triton import functions as tf

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = {  # label → (N, C, H, W)
    "s4 2x8x81x81": (2, 8, 81, 81),
    "s8 2x16x41x41": (2, 16, 41, 41),
    "s16 2x32x21x21": (2, 32, 21, 21),
    "s32 2x64x11x11": (2, 64, 11, 11),
}
K = 7  # live branches of an edge: the weighted sum's K
EDGE_BRANCHES = ((3, 1), (5, 1), (3, 2), (5, 2))


def _nhwc(t: Tensor) -> Tensor:
    return t.permute(0, 2, 3, 1).contiguous()


def _dwconv_case(k: int, d: int):
    def make(shape, impl):
        x, w = torch.randn(shape, device=DEVICE), torch.randn(shape[1], 1, k, k, device=DEVICE)
        if impl == "triton":
            return (lambda x, w: tf.dwconv(x, w, d, relu=True)), (_nhwc(x), w)

        def relu_conv(x, w):
            return F.conv2d(F.relu(x), w, padding=d * (k - 1) // 2, dilation=d, groups=shape[1])

        return relu_conv, (x, w)

    return make


def _edge_case(shape, impl):
    x = torch.randn(shape, device=DEVICE)
    ws = [torch.randn(shape[1], 1, k, k, device=DEVICE) for k, _ in EDGE_BRANCHES]
    if impl == "triton":
        return tf.edge_dwconv, (_nhwc(x), *ws)

    def four_convs(x, *ws):
        r = F.relu(x)
        return tuple(
            F.conv2d(r, w, padding=d * (k - 1) // 2, dilation=d, groups=shape[1])
            for w, (k, d) in zip(ws, EDGE_BRANCHES, strict=True)
        )

    return four_convs, (x, *ws)


def _edge_multi_case(E: int):
    """E edges reading one input (a cell state's fan-out): the multi-set kernel against one
    channel-multiplier depthwise conv per branch (E filters per channel), what PyTorch does best."""

    def make(shape, impl):
        N, C, H, W = shape
        x = torch.randn(shape, device=DEVICE)
        banks = [torch.randn(E, C, k * k, device=DEVICE) for k, _ in EDGE_BRANCHES]
        if impl == "triton":
            return tf.edge_dwconv_multi, (_nhwc(x), *banks)

        def grouped_convs(x, *banks):
            r = F.relu(x)
            return tuple(
                F.conv2d(
                    r,
                    b.transpose(0, 1).reshape(C * E, 1, k, k),
                    padding=d * (k - 1) // 2,
                    dilation=d,
                    groups=C,
                )  # fmt: skip
                for b, (k, d) in zip(banks, EDGE_BRANCHES, strict=True)
            )

        return grouped_convs, (x, *banks)

    return make


def _pool_case(shape, impl):
    x = torch.randn(shape, device=DEVICE)
    if impl == "triton":
        return tf.pool3x3, (_nhwc(x),)

    def pools_and_sums(x):
        mx = F.max_pool2d(x, 3, 1, 1)
        av = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        sums = torch.stack([t.sum((0, 2, 3)) for t in (mx, mx * mx, av, av * av)])
        return mx, av, sums

    return pools_and_sums, (x,)


def _weighted_sum_case(shape, impl):
    ys, w = torch.randn(K, *shape, device=DEVICE), torch.randn(K, device=DEVICE).softmax(0)
    if impl == "triton":
        return tf.weighted_sum, (ys, w)
    return (lambda ys, w: torch.einsum("k,k...->...", w, ys)), (ys, w)


# kernel → (case factory, DRAM bytes per element of x for (fwd, fwd+bwd), fp32), from the
# kernel modules' docstrings: e.g. dwconv forward reads x and writes out (2 × 4 B); its backward
# adds dout + x → dx (3) and dout + x → dweight (2).
KERNELS = {
    "weighted_sum": (_weighted_sum_case, ((K + 1) * 4, (K + 1 + 2 * K + 1) * 4)),
    "dwconv_3x3": (_dwconv_case(3, 1), (2 * 4, 7 * 4)),
    "dwconv_5x5_d2": (_dwconv_case(5, 2), (2 * 4, 7 * 4)),
    "edge_dwconv": (_edge_case, (5 * 4, 16 * 4)),
    # E sets: x once + 4E outputs forward; backward adds 4E dy + x → dx and 4E dy + E x → dw
    "edge_dwconv_multi_E3": (_edge_multi_case(3), ((1 + 12) * 4, (1 + 12 + 12 + 2 + 12 + 3) * 4)),
    "edge_dwconv_multi_E5": (_edge_multi_case(5), ((1 + 20) * 4, (1 + 20 + 20 + 2 + 20 + 5) * 4)),
    "pool3x3": (_pool_case, (3.25 * 4, 8.5 * 4)),
}


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _as_tuple(out) -> tuple[Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", ["torch", "triton"])
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_kernel(benchmark, shape, kernel, impl, mode):
    if impl == "triton" and DEVICE != "cuda":
        pytest.skip("Triton kernels need CUDA (on CPU they only run interpreted, for tests)")
    make, bytes_per_elem = KERNELS[kernel]
    fn, inputs = make(SHAPES[shape], impl)
    benchmark.group = shape
    if mode == "fwd":

        def step():
            with torch.no_grad():
                fn(*inputs)
            _sync()

    else:
        for t in inputs:
            t.requires_grad_()
        grads = [torch.randn_like(o) for o in _as_tuple(fn(*inputs))]

        def step():
            torch.autograd.grad(_as_tuple(fn(*inputs)), inputs, grads)
            _sync()

    if DEVICE == "cuda":
        step()
        torch.cuda.reset_peak_memory_stats()
        step()
        benchmark.extra_info["peak_MiB"] = torch.cuda.max_memory_allocated() / 2**20
    benchmark(step)
    if benchmark.stats:  # None under --benchmark-disable
        nbytes = bytes_per_elem[mode == "fwd+bwd"] * torch.Size(SHAPES[shape]).numel()
        benchmark.extra_info["GB/s"] = nbytes / benchmark.stats.stats.median / 1e9
