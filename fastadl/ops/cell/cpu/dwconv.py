"""Depthwise 'same' convs (stride 1) on channels-last CPU tensors by the C++ kernels
(fastadl/kernels/cpu/dwconv.cpp), for the small maps of the cell path.

Shapes: x (B, Cx, H, W) channels-last; a kernel w (G, 1, kh, kw), any strides (a cropped slice
of a bigger kernel is fine), G = R·Cx: output channel c reads input channel c mod Cx, so a
conv over x repeated R times along channels needs no repeated copy of x.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from fastadl.kernels.cpu import kernel

CL = torch.channels_last


def _cl(t: Tensor) -> Tensor:
    return t if t.is_contiguous(memory_format=CL) else t.contiguous(memory_format=CL)


def dw_conv(x: Tensor, w: Tensor, dilation: int, flip: bool = False) -> Tensor:
    """(B, G, H, W) channels-last: x (B, Cx, H, W) conv'd with w (G, 1, kh, kw), padding
    (k - 1) / 2 · dilation per axis; ``flip`` uses w rotated by 180° (the input gradient)."""
    x = _cl(x)
    B, Cx, H, W = x.shape
    G, _, kh, kw = w.shape
    if G % Cx:
        raise ValueError(f"kernel channels {G} are not a multiple of input channels {Cx}")
    out = torch.empty((B, G, H, W), dtype=x.dtype, device=x.device, memory_format=CL)
    fn = kernel("dw_conv", x.dtype)
    strides = (ctypes.c_int64 * 3)(w.stride(0), w.stride(2), w.stride(3))
    fn(x.data_ptr(), w.data_ptr(), strides, out.data_ptr(), B, H, W, Cx, G, kh, kw, dilation,
       (kh - 1) // 2 * dilation, (kw - 1) // 2 * dilation, int(flip))  # fmt: skip
    return out


def dw_weight_grad_cpp(g: Tensor, x: Tensor, k: int, dilation: int) -> Tensor:
    """dL/dw (G, 1, k, k) of dw_conv(x, w, dilation) for dL/d out = g (B, G, H, W); x may have
    G / R channels as in dw_conv. Taps that never reach the map get 0."""
    g, x = _cl(g), _cl(x)
    B, G, H, W = g.shape
    Cx = x.shape[1]
    gw = g.new_empty(G, 1, k, k)
    fn = kernel("dw_wgrad", g.dtype)
    pad = (k - 1) // 2 * dilation
    fn(g.data_ptr(), x.data_ptr(), gw.data_ptr(), B, H, W, Cx, G, k, k, dilation, pad, pad)
    return gw
