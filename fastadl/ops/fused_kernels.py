"""Building blocks of the `fused` backend: plain tensor functions, no autograd, no modules.

Layouts (chosen by profiling one edge on a 2-core CPU, docs/PERFORMANCE.md):
- Depthwise convs run on channels-last tensors. oneDNN's channels-last depthwise forward is
  about 2x faster than NCHW, and its backward is what the reference loses most time in: the
  input gradient of a dilated depthwise conv and the weight gradient of a 5x5 one take 10-20
  forward-conv times in NCHW. Here the input gradient is a forward conv with the flipped
  kernel (a stride-1 'same' conv is its own transpose up to the flip) and the weight gradient
  is oneDNN's channels-last path.
- Pointwise 1x1 convs are batched GEMMs (fastadl/ops/fused_function.py) that read the
  channels-last depthwise outputs transposed and write channel-major rows ``Z: (rows, C, M)``,
  so every branch's BatchNorm statistics are contiguous reductions over the last axis.
- BatchNorm is done by hand from means (no native batch_norm call): its CPU kernels are slow
  on either layout for these shapes (the backward on channels-last, the forward on NCHW),
  while reductions and elementwise ops run at memory speed.
- Pools are ATen's channels-last kernels (4x faster than their NCHW ones here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CL = torch.channels_last


def same_padding(k: int, dilation: int) -> int:
    return dilation * (k - 1) // 2


def dw_forward(x_cl: Tensor, w: Tensor, dilation: int) -> Tensor:
    """Depthwise 'same' conv. x_cl: (N, C, H, W) channels-last; w: (C, 1, k, k) → like x_cl."""
    pad = same_padding(w.shape[-1], dilation)
    return F.conv2d(x_cl, w, None, 1, pad, dilation, x_cl.shape[1])


def dw_grad_input(g_cl: Tensor, w: Tensor, dilation: int) -> Tensor:
    """d(dw_forward)/dx applied to g: the same conv with the kernel flipped in both axes."""
    pad = same_padding(w.shape[-1], dilation)
    return F.conv2d(g_cl, w.flip((-2, -1)), None, 1, pad, dilation, g_cl.shape[1])


def dw_grad_weight(g_cl: Tensor, x_cl: Tensor, w: Tensor, dilation: int) -> Tensor:
    """d(dw_forward)/dw applied to g → (C, 1, k, k)."""
    pad = same_padding(w.shape[-1], dilation)
    return torch.ops.aten.convolution_backward(
        g_cl, x_cl, w, None, (1, 1), (pad, pad), (dilation, dilation), False, (0, 0),
        x_cl.shape[1], (False, True, False),
    )[1]  # fmt: skip


def dw_grads(
    g_cl: Tensor, x_cl: Tensor, w: Tensor, dilation: int, need_input: bool, need_weight: bool
) -> tuple[Tensor | None, Tensor | None]:
    """(grad input, grad weight) of dw_forward, each None when not needed.

    Undilated: oneDNN gives both in one call (its fast path). Dilated: its input-gradient path
    is slow, so the input gradient is the flipped-kernel forward conv instead."""
    if need_input and need_weight and dilation == 1:
        pad = same_padding(w.shape[-1], 1)
        gi, gw, _ = torch.ops.aten.convolution_backward(
            g_cl, x_cl, w, None, (1, 1), (pad, pad), (1, 1), False, (0, 0), x_cl.shape[1],
            (True, True, False),
        )  # fmt: skip
        return gi, gw
    gi = dw_grad_input(g_cl, w, dilation) if need_input else None
    gw = dw_grad_weight(g_cl, x_cl, w, dilation) if need_weight else None
    return gi, gw


def max_pool(x_cl: Tensor) -> tuple[Tensor, Tensor]:
    """3x3 stride-1 max pool, padding 1 → (values, argmax indices)."""
    return torch.ops.aten.max_pool2d_with_indices(x_cl, (3, 3), (1, 1), (1, 1), (1, 1), False)


def max_pool_grad(g: Tensor, x_cl: Tensor, indices: Tensor) -> Tensor:
    return torch.ops.aten.max_pool2d_with_indices_backward(
        g, x_cl, (3, 3), (1, 1), (1, 1), (1, 1), False, indices
    )


def avg_pool(x_cl: Tensor) -> Tensor:
    """3x3 stride-1 average pool, padding 1, padded zeros not counted."""
    return F.avg_pool2d(x_cl, 3, 1, 1, count_include_pad=False)


def avg_pool_grad(g: Tensor, x_cl: Tensor) -> Tensor:
    return torch.ops.aten.avg_pool2d_backward(g, x_cl, (3, 3), (1, 1), (1, 1), False, False, None)


def pool_rows(x: Tensor, kinds: tuple[str, ...], with_x: bool):
    """The 3x3 pools of x ("max" | "avg" each), then x itself if with_x, concatenated along the
    batch axis channels-last: (Ab (k·N, C, H, W), x channels-last, max-pool argmax indices)."""
    if torch.compiler.is_compiling():  # functional: see relu_to
        x_cl = x.contiguous(memory_format=CL)
        rows, indices = [], []
        for kind in kinds:
            if kind == "max":
                p, ind = max_pool(x_cl)
                indices.append(ind)
            else:
                p = avg_pool(x_cl)
            rows.append(p)
        return torch.cat(rows + [x_cl] * with_x), x_cl, indices
    N, C, H, W = x.shape
    P = len(kinds)
    Ab = torch.empty(((P + with_x) * N, C, H, W), dtype=x.dtype, device=x.device, memory_format=CL)
    x_cl = Ab[P * N :].copy_(x) if with_x else x.contiguous(memory_format=CL)
    indices = []
    for i, kind in enumerate(kinds):  # written in place: no concatenation pass
        out = Ab[i * N : (i + 1) * N]
        if kind == "max":
            indices.append(
                torch.empty(x.shape, dtype=torch.long, device=x.device, memory_format=CL)
            )
            torch.ops.aten.max_pool2d_with_indices.out(
                x_cl, (3, 3), (1, 1), (1, 1), (1, 1), False, out=out, indices=indices[-1]
            )
        else:
            torch.ops.aten.avg_pool2d.out(x_cl, (3, 3), (1, 1), (1, 1), False, False, None, out=out)
    return Ab, x_cl, indices


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
