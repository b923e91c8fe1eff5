"""Differentiable torch ops around the Triton kernels (kernels/, imported as fastadl.kernels.triton).

Each kernel family is a ``torch.library.custom_op`` (namespace ``fastadl``) with a fake impl for
tracing and ``register_autograd`` for its gradient; each backward is a custom op of its own, so
torch.compile traces forward and backward as opaque, shape-known calls. The autograd plumbing
only saves tensors and calls the backward ops; the math lives in the kernels.

The spatial ops take channels-last tensors laid out as (N, H, W, C) (see fastadl/kernels/triton/nhwc.py for
why); the public functions make their inputs contiguous once, before the op saves them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastadl.kernels.triton import dwconv as _dw
from fastadl.kernels.triton import edge_dwconv as _edge
from fastadl.kernels.triton import pool as _pool
from fastadl.kernels.triton import weighted_sum as _ws


def _empty(t: Tensor, shape=None, dtype=None) -> Tensor:
    """A contiguous tensor like t (what every launcher returns), for the fake impls."""
    return t.new_empty(t.shape if shape is None else shape, dtype=dtype or t.dtype)


# ---- weighted sum: Σ_k w_k · y_k ----------------------------------------------------------------


@torch.library.custom_op("fastadl::weighted_sum", mutates_args=())
def _weighted_sum(ys: Tensor, w: Tensor) -> Tensor:
    return _ws.weighted_sum_fwd(ys, w)


@_weighted_sum.register_fake
def _(ys, w):
    return _empty(ys, ys.shape[1:])


@torch.library.custom_op("fastadl::weighted_sum_backward", mutates_args=())
def _weighted_sum_backward(dout: Tensor, ys: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    return _ws.weighted_sum_bwd(dout, ys, w)


@_weighted_sum_backward.register_fake
def _(dout, ys, w):
    return _empty(ys), _empty(w)


def _weighted_sum_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _weighted_sum_grad(ctx, dout):
    return _weighted_sum_backward(dout, *ctx.saved_tensors)


_weighted_sum.register_autograd(_weighted_sum_grad, setup_context=_weighted_sum_setup)


def weighted_sum(ys: Tensor, w: Tensor) -> Tensor:
    """ys: (K, *S) stacked branch outputs; w: (K,) → (*S) Σ_k w[k] · ys[k]."""
    return _weighted_sum(ys.contiguous(), w.contiguous())


# ---- depthwise conv (optionally ReLU on its input) ----------------------------------------------


@torch.library.custom_op("fastadl::dwconv", mutates_args=())
def _dwconv(x: Tensor, weight: Tensor, dilation: int, relu: bool) -> Tensor:
    return _dw.dwconv_fwd(x, weight, dilation, relu)


@_dwconv.register_fake
def _(x, weight, dilation, relu):
    return _empty(x)


@torch.library.custom_op("fastadl::dwconv_backward_input", mutates_args=())
def _dwconv_backward_input(
    dout: Tensor, x: Tensor, weight: Tensor, dilation: int, relu: bool
) -> Tensor:
    return _dw.dwconv_bwd_input(dout, x, weight, dilation, relu)


@_dwconv_backward_input.register_fake
def _(dout, x, weight, dilation, relu):
    return _empty(x)


@torch.library.custom_op("fastadl::dwconv_backward_weight", mutates_args=())
def _dwconv_backward_weight(
    dout: Tensor, x: Tensor, weight: Tensor, dilation: int, relu: bool
) -> Tensor:
    return _dw.dwconv_bwd_weight(dout, x, weight, dilation, relu)


@_dwconv_backward_weight.register_fake
def _(dout, x, weight, dilation, relu):
    return _empty(weight)


def _dwconv_setup(ctx, inputs, output):
    x, weight, ctx.dilation, ctx.relu = inputs
    ctx.save_for_backward(x, weight)


def _dwconv_grad(ctx, dout):
    x, weight = ctx.saved_tensors
    args = (dout, x, weight, ctx.dilation, ctx.relu)
    dx = _dwconv_backward_input(*args) if ctx.needs_input_grad[0] else None
    dw = _dwconv_backward_weight(*args) if ctx.needs_input_grad[1] else None
    return dx, dw, None, None


_dwconv.register_autograd(_dwconv_grad, setup_context=_dwconv_setup)


def dwconv(x: Tensor, weight: Tensor, dilation: int = 1, relu: bool = False) -> Tensor:
    """x: (N, H, W, C); weight: (C, 1, k, k), k ∈ {3, 5}, dilation ∈ {1, 2} → (N, H, W, C).

    The depthwise 'same' convolution of ReLU(x) (relu=True) or x, as F.conv2d(groups=C) in NHWC.
    """
    return _dwconv(x.contiguous(), weight.contiguous(), dilation, relu)


# ---- fused first stage of the four conv branches of E edges reading one input -------------------


@torch.library.custom_op("fastadl::edge_dwconv_multi", mutates_args=())
def _edge_dwconv_multi(x: Tensor, w_s3: Tensor, w_s5: Tensor, w_d3: Tensor, w_d5: Tensor) -> Tensor:
    return _edge.edge_dwconv_fwd(x, w_s3, w_s5, w_d3, w_d5)


@_edge_dwconv_multi.register_fake
def _(x, w_s3, w_s5, w_d3, w_d5):
    return _empty(x, (w_s3.shape[0], 4, *x.shape))


@torch.library.custom_op("fastadl::edge_dwconv_multi_backward", mutates_args=())
def _edge_dwconv_multi_backward(
    dy: Tensor, x: Tensor, w_s3: Tensor, w_s5: Tensor, w_d3: Tensor, w_d5: Tensor
) -> tuple[Tensor, Tensor]:
    return _edge.edge_dwconv_bwd(dy, x, w_s3, w_s5, w_d3, w_d5)


@_edge_dwconv_multi_backward.register_fake
def _(dy, x, w_s3, w_s5, w_d3, w_d5):
    E, C = w_s3.shape[:2]
    return _empty(x), _empty(w_s3, (68 * E * C,))


def _edge_dwconv_multi_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _edge_dwconv_multi_grad(ctx, dy):
    # the four filter gradients come back as one buffer (custom-op outputs may not alias)
    dx, dw = _edge_dwconv_multi_backward(dy, *ctx.saved_tensors)
    E, C = ctx.saved_tensors[1].shape[:2]
    return dx, *_edge.split_filter_grads(dw, E, C)


_edge_dwconv_multi.register_autograd(
    _edge_dwconv_multi_grad, setup_context=_edge_dwconv_multi_setup
)


def edge_dwconv_multi(x: Tensor, w_s3: Tensor, w_s5: Tensor, w_d3: Tensor, w_d5: Tensor) -> Tensor:
    """The first ReLU → depthwise stage of the four conv branches of E edges that read one input.

    x: (N, H, W, C) channels-last input (an NCHW tensor's ``permute(0, 2, 3, 1)`` is fine; it is
    made contiguous once). Filters, one bank per branch, each edge's k×k filters flattened
    row-major, ``conv.weight.view(C, k * k)`` stacked over the E edges:
    w_s3 (E, C, 9) 3×3 dilation 1 (sep_conv_3x3), w_s5 (E, C, 25) 5×5 dilation 1 (sep_conv_5x5),
    w_d3 (E, C, 9) 3×3 dilation 2 (dil_conv_3x3), w_d5 (E, C, 25) 5×5 dilation 2 (dil_conv_5x5).
    Returns y (E, 4, N, H, W, C), contiguous: y[e, b] = conv2d(ReLU(x), filter b of edge e,
    'same' padding, groups=C) in channels-last, b in the order (s3, s5, d3, d5).

    Differentiable in x and all four banks: dx = [x > 0] · Σ over the E·4 filters (one gather,
    no atomics), and each bank's gradient (E, C, k·k) by a deterministic two-stage reduction
    (bitwise repeatable). Any float dtype in, float32 accumulation, y in x's dtype, filter
    gradients in the filters' dtype. CUDA tensors (one device), or CPU under TRITON_INTERPRET=1.
    """
    ws = (w.contiguous() for w in (w_s3, w_s5, w_d3, w_d5))
    return _edge_dwconv_multi(x.contiguous(), *ws)


def edge_dwconv(x: Tensor, w_s3: Tensor, w_s5: Tensor, w_d3: Tensor, w_d5: Tensor) -> Tensor:
    """One edge: x (N, H, W, C); depthwise filters (C, 1, k, k) of 3×3 d1, 5×5 d1, 3×3 d2, 5×5 d2
    → (4, N, H, W, C): the four depthwise convs of ReLU(x), in that order (edge_dwconv_multi
    with E = 1; the views cost nothing and carry the gradients back to the (C, 1, k, k) weights)."""
    C = x.shape[-1]
    ws = (w.reshape(1, C, -1) for w in (w_s3, w_s5, w_d3, w_d5))
    return edge_dwconv_multi(x, *ws)[0]


# ---- fused 3×3 max + avg pool with BatchNorm sums -----------------------------------------------


@torch.library.custom_op("fastadl::pool3x3", mutates_args=())
def _pool3x3(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return _pool.pool3x3_fwd(x)


@_pool3x3.register_fake
def _(x):
    stats = _empty(x, (6, x.shape[-1]), torch.float32)
    return _empty(x), _empty(x), stats, _empty(x, dtype=torch.int8)


@torch.library.custom_op("fastadl::pool3x3_backward", mutates_args=())
def _pool3x3_backward(
    dmax: Tensor, davg: Tensor, dstats: Tensor, mx: Tensor, av: Tensor, arg: Tensor, stats: Tensor
) -> Tensor:
    return _pool.pool3x3_bwd(dmax, davg, dstats, mx, av, arg, stats)


@_pool3x3_backward.register_fake
def _(dmax, davg, dstats, mx, av, arg, stats):
    return _empty(dmax)


def _pool3x3_setup(ctx, inputs, output):
    mx, av, stats, arg = output
    ctx.save_for_backward(mx, av, arg, stats)


def _pool3x3_grad(ctx, dmax, davg, dstats, _darg):
    # autograd hands zeros (never None) for outputs the caller did not use; argmax has no
    # grad, and the shift rows of stats are constants (fastadl/kernels/triton/pool.py)
    return _pool3x3_backward(dmax, davg, dstats, *ctx.saved_tensors)


_pool3x3.register_autograd(_pool3x3_grad, setup_context=_pool3x3_setup)


def pool3x3(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """x: (N, H, W, C) → (max, avg, stats): the 3×3 stride-1 max pool and avg pool
    (count_include_pad=False), both (N, H, W, C), and stats (6, C) fp32 holding per channel
    Σ (max − m₀), Σ (max − m₀)², Σ (avg − a₀), Σ (avg − a₀)² over N·H·W, then m₀ and a₀ (the
    pools at pixel 0): what the pools' BatchNorms need, shifted so that their variance stays
    accurate in float32 (fastadl/kernels/triton/pool.py)."""
    mx, av, stats, _ = _pool3x3(x.contiguous())
    return mx, av, stats
