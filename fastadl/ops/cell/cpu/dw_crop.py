"""Depthwise 'same' conv weight gradients with the taps that can never reach the image cropped.

On a small map a large or dilated kernel mostly reads padding: at the coarsest trellis level
of a 64×64 crop (2×2 pixels) a 5×5 dilation-2 tap at offset ±2 or ±4 only ever meets zeros, so
dil_conv_5x5 there is a per-channel scale. A tap at offset o·d is kept when |o·d| <= size - 1
(it reaches at least one pixel), in each axis separately; the padding shrinks with it, so the
output is the same tensor the full kernel gives (the dropped products are exactly 0), and the
weight gradient of a dropped tap is exactly 0. oneDNN's small-map paths for big kernels are
slow (a 5×5 dilation-2 depthwise conv on 2×2 pixels costs more than one on 16×16), so the crop
also avoids them (fastadl/ops/cell/conv_runs.py crops the forward kernels by the same rule).
Tensors are channels-last (B, G, H, W) with weights (G, 1, k, k).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fastadl.kernels.cpu import accepts
from fastadl.ops.cell.cpu.dwconv import dw_weight_grad_cpp


def reach(k: int, dilation: int, size: int) -> int:
    """Taps kept on each side of the centre along an axis of ``size`` pixels."""
    return min((k - 1) // 2, (size - 1) // dilation)


# How a depthwise weight gradient is computed (measured on the search's shapes, 1 thread,
# docs/PERFORMANCE.md): oneDNN's own call is fast for undilated 3×3 kernels on maps above
# 4×4, but has a large fixed cost on small maps and is 3-10× slower than it need be for 5×5
# and dilated kernels; there the gradient is computed as a forward depthwise conv with
# batch and channels swapped (the upstream gradient as the kernel, the kernel's taps as the
# output, see _swapped_weight_grad), and on maps of up to WINDOW_WGRAD_MAX_PIXELS pixels as
# one product of shifted windows summed over positions.
WINDOW_WGRAD_MAX_PIXELS = 16
# Up to this many pixels the C++ kernel (fastadl/ops/cell/cpu/dwconv.py) computes the gradient: on
# one thread it is 1.9-15x faster than the best ATen route above on every map the search sees
# (2²-64², measured against ATen on 1 and on 2 threads; docs/PERFORMANCE.md "C++ depthwise
# kernels"). Larger maps (crops above 256²) were not measured and keep ATen.
NATIVE_WGRAD_MAX_PIXELS = 4096


def _window_weight_grad(g: Tensor, x: Tensor, kh: int, kw: int, dilation: int, pad) -> Tensor:
    """Σ over (n, h, w) of x's shifted windows times g: (G, 1, kh, kw). g, x channels-last."""
    B, G, H, W = x.shape
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, pad[1], pad[1], pad[0], pad[0]))  # (B, H', W', G)
    s = xp.stride()
    win = xp.as_strided((B, H, W, kh, kw, G), (s[0], s[1], s[2], s[1] * dilation,
                                                 s[2] * dilation, s[3]))  # fmt: skip
    prod = win.reshape(B * H * W, kh * kw, G) * g.permute(0, 2, 3, 1).reshape(B * H * W, 1, G)
    return prod.sum(0).t().reshape(G, 1, kh, kw)


def _swapped_weight_grad(g: Tensor, x: Tensor, kh: int, kw: int, dilation: int, pad) -> Tensor:
    """dw[c, a, b] = Σ_{n,h,w} x_pad[n, c, h + a·d, w + b·d] g[n, c, h, w]: for each (c, n) a
    correlation of x with g, i.e. one depthwise conv over B·G channels whose kernels are g
    (H×W) and whose output, taken with stride d, is the kh×kw grid of taps; summed over n."""
    B, G, H, W = x.shape
    xs = x.transpose(0, 1).reshape(1, G * B, H, W)  # (1, G·B, H, W): channel c·B + n
    gs = g.transpose(0, 1).reshape(G * B, 1, H, W)
    out = F.conv2d(xs, gs, None, dilation, pad, 1, G * B)  # (1, G·B, kh, kw)
    return out.view(G, B, kh, kw).sum(1, keepdim=True)


def dw_weight_grad_cropped(g: Tensor, x: Tensor, k: int, dilation: int) -> Tensor:
    """dL/dw (G, 1, k, k) of a full k×k 'same' depthwise conv for dL/d out = g; g, x channels-last."""
    G, H, W = x.shape[1], x.shape[2], x.shape[3]
    if H * W <= NATIVE_WGRAD_MAX_PIXELS and accepts(x):
        return dw_weight_grad_cpp(g, x, k, dilation)
    half = (k - 1) // 2
    rh, rw = reach(k, dilation, H), reach(k, dilation, W)
    kh, kw, pad = 2 * rh + 1, 2 * rw + 1, (rh * dilation, rw * dilation)
    if kh == kw == 1:
        gw = (g * x).sum((0, 2, 3)).view(G, 1, 1, 1)
    elif H * W <= WINDOW_WGRAD_MAX_PIXELS // 4:  # 2×2 maps
        gw = _window_weight_grad(g, x, kh, kw, dilation, pad)
    elif kh * kw > 9 or dilation > 1:
        gw = _swapped_weight_grad(g, x, kh, kw, dilation, pad)
    elif H * W <= WINDOW_WGRAD_MAX_PIXELS:
        gw = _window_weight_grad(g, x, kh, kw, dilation, pad)
    else:
        shape = torch.Size((G, 1, kh, kw))
        gw = torch.ops.aten.convolution_backward(
            g, x, x.new_empty(1).expand(shape), None, (1, 1), pad, (dilation, dilation), False,
            (0, 0), G, (False, True, False),
        )[1]  # fmt: skip
    if (rh, rw) != (half, half):
        gw = F.pad(gw, (half - rw, half - rw, half - rh, half - rh))
    return gw
