"""Building blocks of the `fused` backend: plain tensor functions, no autograd, no modules.

Layouts (chosen by profiling one edge on a 2-core CPU, docs/PERFORMANCE.md):
- Depthwise convs run on channels-last tensors. oneDNN's channels-last depthwise forward is
  about 2x faster than NCHW, and its backward is what the reference loses most time in: the
  input gradient of a dilated depthwise conv and the weight gradient of a 5x5 one take 10-20
  forward-conv times in NCHW. Here the input gradient is a forward conv with the flipped
  kernel (a stride-1 'same' conv is its own transpose up to the flip) and the weight gradient
  is oneDNN's channels-last path.
- Pointwise 1x1 convs are batched GEMMs (fastadl/ops/edge/function.py) that read the
  channels-last depthwise outputs transposed and write channel-major rows ``Z: (rows, C, M)``,
  so every branch's BatchNorm statistics are contiguous reductions over the last axis.
- BatchNorm is done by hand from means (no native batch_norm call): its CPU kernels are slow
  on either layout for these shapes (the backward on channels-last, the forward on NCHW),
  while reductions and elementwise ops run at memory speed.
- Pools are ATen's channels-last kernels (4x faster than their NCHW ones here).
- Stride 2 (DARTS' reduction edges): the pools and the first depthwise conv are strided; the
  strided depthwise conv's gradients come from oneDNN's convolution_backward (a strided conv is
  not its own transpose); skip_connect is the factorized reduce, two 1x1 GEMMs (below).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fastadl.ops.reference import strided_size

CL = torch.channels_last


def same_padding(k: int, dilation: int) -> int:
    return dilation * (k - 1) // 2


def output_shape(x: Tensor, stride: int) -> tuple[int, int, int, int]:
    """(N, C, H, W) of an edge's output for x: (N, C, H_in, W_in): H = ceil(H_in / stride)."""
    N, C, H, W = x.shape
    return N, C, strided_size(H, stride), strided_size(W, stride)


def dw_forward(x_cl: Tensor, w: Tensor, dilation: int, stride: int = 1) -> Tensor:
    """Depthwise 'same' conv. x_cl: (N, C, H, W) channels-last; w: (C, 1, k, k) → channels-last
    (N, C, ceil(H/stride), ceil(W/stride))."""
    pad = same_padding(w.shape[-1], dilation)
    return F.conv2d(x_cl, w, None, stride, pad, dilation, x_cl.shape[1])


def dw_grad_input(g_cl: Tensor, w: Tensor, dilation: int) -> Tensor:
    """d(dw_forward)/dx applied to g: the same conv with the kernel flipped in both axes."""
    pad = same_padding(w.shape[-1], dilation)
    return F.conv2d(g_cl, w.flip((-2, -1)), None, 1, pad, dilation, g_cl.shape[1])


def dw_weight_grad_aten(g_cl: Tensor, x_cl: Tensor, w: Tensor, dilation: int) -> Tensor:
    """d(dw_forward)/dw applied to g → (C, 1, k, k)."""
    pad = same_padding(w.shape[-1], dilation)
    return torch.ops.aten.convolution_backward(
        g_cl, x_cl, w, None, (1, 1), (pad, pad), (dilation, dilation), False, (0, 0),
        x_cl.shape[1], (False, True, False),
    )[1]  # fmt: skip


def dw_grads(
    g_cl: Tensor,
    x_cl: Tensor,
    w: Tensor,
    dilation: int,
    need_input: bool,
    need_weight: bool,
    stride: int = 1,
) -> tuple[Tensor | None, Tensor | None]:
    """(grad input, grad weight) of dw_forward, each None when not needed.

    Undilated: oneDNN gives both in one call (its fast path). Dilated: its input-gradient path
    is slow, so the input gradient is the flipped-kernel forward conv instead. Strided: one
    convolution_backward call undilated; dilated, the stride-1 path on zero_insert(g)."""
    if stride != 1 and dilation != 1:  # oneDNN's strided dilated input gradient is ~50x slower
        return dw_grads(
            zero_insert(g_cl, x_cl.shape, stride), x_cl, w, dilation, need_input, need_weight
        )
    if stride != 1:
        pad = same_padding(w.shape[-1], dilation)
        gi, gw, _ = torch.ops.aten.convolution_backward(
            g_cl, x_cl, w, None, (stride, stride), (pad, pad), (1, 1), False, (0, 0),
            x_cl.shape[1], (need_input, need_weight, False),
        )  # fmt: skip
        if gi is not None:
            gi = gi.contiguous(memory_format=CL)
        return gi, gw
    if need_input and need_weight and dilation == 1:
        pad = same_padding(w.shape[-1], 1)
        gi, gw, _ = torch.ops.aten.convolution_backward(
            g_cl, x_cl, w, None, (1, 1), (pad, pad), (1, 1), False, (0, 0), x_cl.shape[1],
            (True, True, False),
        )  # fmt: skip
        return gi, gw
    gi = dw_grad_input(g_cl, w, dilation) if need_input else None
    gw = dw_weight_grad_aten(g_cl, x_cl, w, dilation) if need_weight else None
    return gi, gw


def zero_insert(g_cl: Tensor, shape: torch.Size, stride: int) -> Tensor:
    """g: (N, C, H', W') channels-last spread onto zeros of ``shape`` at [::stride, ::stride].

    A stride-s 'same' conv's gradients for dL/dy = g are the stride-1 conv's for this spread g
    (output position o of the strided conv is position s·o of the stride-1 one), and the
    stride-1 formulas above are the fast ones for a dilated depthwise conv."""
    N, C, H, W = shape
    rows = g_cl.new_zeros(N, H, W, C)
    rows[:, ::stride, ::stride] = g_cl.permute(0, 2, 3, 1)
    return rows.permute(0, 3, 1, 2)


def max_pool(x_cl: Tensor, stride: int = 1) -> tuple[Tensor, Tensor]:
    """3x3 max pool, padding 1 → (values, argmax indices)."""
    s = (stride, stride)
    return torch.ops.aten.max_pool2d_with_indices(x_cl, (3, 3), s, (1, 1), (1, 1), False)


def max_pool_grad(g: Tensor, x_cl: Tensor, indices: Tensor, stride: int = 1) -> Tensor:
    return torch.ops.aten.max_pool2d_with_indices_backward(
        g, x_cl, (3, 3), (stride, stride), (1, 1), (1, 1), False, indices
    )


def avg_pool(x_cl: Tensor, stride: int = 1) -> Tensor:
    """3x3 average pool, padding 1, padded zeros not counted."""
    return F.avg_pool2d(x_cl, 3, stride, 1, count_include_pad=False)


def avg_pool_grad(g: Tensor, x_cl: Tensor, stride: int = 1) -> Tensor:
    s = (stride, stride)
    return torch.ops.aten.avg_pool2d_backward(g, x_cl, (3, 3), s, (1, 1), False, False, None)


def pool_rows(x: Tensor, kinds: tuple[str, ...], with_x: bool, stride: int = 1):
    """The 3x3 pools of x ("max" | "avg" each), then x itself if with_x (stride 1 only),
    concatenated along the batch axis channels-last: (Ab (k·N, C, H_out, W_out), x
    channels-last, max-pool argmax indices)."""
    if torch.compiler.is_compiling():  # functional: see relu_to
        x_cl = x.contiguous(memory_format=CL)
        rows, indices = [], []
        for kind in kinds:
            if kind == "max":
                p, ind = max_pool(x_cl, stride)
                indices.append(ind)
            else:
                p = avg_pool(x_cl, stride)
            rows.append(p)
        return torch.cat(rows + [x_cl] * with_x), x_cl, indices
    N, C, H, W = shape = output_shape(x, stride)
    P, s = len(kinds), (stride, stride)
    Ab = torch.empty(((P + with_x) * N, C, H, W), dtype=x.dtype, device=x.device, memory_format=CL)
    x_cl = Ab[P * N :].copy_(x) if with_x else x.contiguous(memory_format=CL)
    indices = []
    for i, kind in enumerate(kinds):  # written in place: no concatenation pass
        out = Ab[i * N : (i + 1) * N]
        if kind == "max":
            indices.append(torch.empty(shape, dtype=torch.long, device=x.device, memory_format=CL))
            torch.ops.aten.max_pool2d_with_indices.out(
                x_cl, (3, 3), s, (1, 1), (1, 1), False, out=out, indices=indices[-1]
            )
        else:
            torch.ops.aten.avg_pool2d.out(x_cl, (3, 3), s, (1, 1), False, False, None, out=out)
    return Ab, x_cl, indices


def _reduce_inputs(r_cl: Tensor) -> tuple[Tensor, Tensor]:
    """The factorized reduce's two inputs as (M, C) rows, M = N·ceil(H/2)·ceil(W/2): r at even
    rows and columns, and r shifted by one pixel (odd rows and columns, zero-padded at the
    bottom/right when H or W is odd, fastadl/ops/reference.py::FactorizedReduce)."""
    N, C, H, W = output_shape(r_cl, 2)
    even = r_cl[:, :, ::2, ::2].permute(0, 2, 3, 1).reshape(-1, C)
    odd = r_cl[:, :, 1::2, 1::2]
    odd = F.pad(odd, (0, W - odd.shape[-1], 0, H - odd.shape[-2]))
    return even, odd.permute(0, 2, 3, 1).reshape(-1, C)


def factorized_reduce(r_cl: Tensor, w1: Tensor, w2: Tensor, out: Tensor) -> None:
    """The two strided 1x1 convs of the factorized reduce, pre-BN, into out: (C_out, M).

    r_cl: ReLU(x), (N, C, H, W) channels-last; w1: (C1, C, 1, 1), w2: (C_out - C1, C, 1, 1)."""
    even, odd = _reduce_inputs(r_cl)
    C1 = w1.shape[0]
    torch.mm(w1.flatten(1), even.t(), out=out[:C1])
    torch.mm(w2.flatten(1), odd.t(), out=out[C1:])


def factorized_reduce_grads(
    gz: Tensor, r_cl: Tensor, w1: Tensor, w2: Tensor, need_input: bool, need_weight: bool
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """(dL/dr (N, C, H, W) channels-last, dL/dw1, dL/dw2) of factorized_reduce for gz = dL/dout,
    each None when not needed."""
    C1 = w1.shape[0]
    gr = gw1 = gw2 = None
    if need_weight:
        even, odd = _reduce_inputs(r_cl)
        gw1 = torch.mm(gz[:C1], even).view(w1.shape)
        gw2 = torch.mm(gz[C1:], odd).view(w2.shape)
    if need_input:
        N, C, H, W = output_shape(r_cl, 2)
        Hi, Wi = r_cl.shape[-2:]
        rows = r_cl.new_zeros(N, Hi, Wi, C)  # dL/dr, (N, H, W, C) contiguous = channels-last
        rows[:, ::2, ::2] = torch.mm(gz[:C1].t(), w1.flatten(1)).view(N, H, W, C)
        odd = torch.mm(gz[C1:].t(), w2.flatten(1)).view(N, H, W, C)
        rows[:, 1::2, 1::2] = odd[:, : Hi // 2, : Wi // 2]
        gr = rows.permute(0, 3, 1, 2)
    return gr, gw1, gw2


def stack_rows(tensors: list[Tensor], out: Tensor) -> None:
    """Channels-last (N, C, H, W) tensors into out: (k, N, H, W, C), contiguous."""
    if torch.compiler.is_compiling():  # see below: out= must be contiguous for dynamo
        torch.stack([t.permute(0, 2, 3, 1) for t in tensors], out=out)
    else:
        torch.stack(tensors, out=out.permute(0, 1, 4, 2, 3))


# The two helpers below write into a preallocated buffer in eager mode (one pass, the layout
# change included). Under torch.compile they are functional instead: inductor fuses them anyway,
# and an out= buffer whose strides differ from the op's natural output trips its layout planning.


def relu_to(z: Tensor, out: Tensor) -> Tensor:
    """ReLU(z) into the contiguous ``out``; returns the result."""
    if torch.compiler.is_compiling():
        return torch.relu(z).contiguous()
    return torch.clamp_min(z, 0, out=out)


def relu_grad_to(g: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """ReLU backward, g where y > 0 else 0 (y: the ReLU's input or output), into the contiguous
    ``out`` (which may be g itself); returns the result."""
    if torch.compiler.is_compiling():
        return torch.ops.aten.threshold_backward(g, y, 0).contiguous()
    return torch.ops.aten.threshold_backward.grad_input(g, y, 0, grad_input=out)
