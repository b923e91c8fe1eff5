"""A fan-out group's 3×3 pools (stride 1) and their backward by the C++ kernels
(fastadl/kernels/cpu/pools.cpp): both pools in one pass each way, instead of two ATen calls
forward and two backward (plus the adds), which cost 10-25 µs apiece on small maps.

The same contract as fastadl/ops/edge/aten.py::pool_rows, except that the max pool's
argmax is an int8 tap index (0..8, row-major in the window) per element.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastadl.kernels.cpu import accepts, kernel

CL = torch.channels_last


def pools_native_ok(x: Tensor, kinds: tuple[str, ...]) -> bool:
    """Whether the kernels take this group's pools (each of max/avg at most once)."""
    return accepts(x) and len(set(kinds)) == len(kinds) and set(kinds) <= {"max", "avg"}


def pool_rows_native(x: Tensor, kinds: tuple[str, ...], with_x: bool):
    """x (N, C, H, W) → (Ab (k·N, C, H, W) channels-last: the pools in ``kinds`` order then x
    if with_x, x channels-last, [argmax taps (N, H, W, C) int8] if "max" is a kind)."""
    N, C, H, W = x.shape
    k = len(kinds)
    Ab = torch.empty(((k + with_x) * N, C, H, W), dtype=x.dtype, device=x.device, memory_format=CL)
    x_cl = Ab[k * N :].copy_(x) if with_x else x.contiguous(memory_format=CL)
    rows = {kind: Ab[i * N : (i + 1) * N] for i, kind in enumerate(kinds)}
    arg = torch.empty((N, H, W, C), dtype=torch.int8, device=x.device) if "max" in rows else None
    mx, av = rows.get("max"), rows.get("avg")
    kernel("pools_forward", x.dtype)(
        x_cl.data_ptr(), None if mx is None else mx.data_ptr(),
        None if arg is None else arg.data_ptr(), None if av is None else av.data_ptr(), N, H, W, C,
    )  # fmt: skip
    return Ab, x_cl, [] if arg is None else [arg]


def pools_grad_native(gps: Tensor, kinds: tuple[str, ...], indices, nhw, gx: Tensor | None):
    """The pools' input gradient (N·H·W, C) for upstream gradients gps (k, N·H·W, C) contiguous
    in ``kinds`` order on (N, H, W) = nhw maps; indices: pool_rows_native's; added into gx
    (N·H·W, C) when given (then returned)."""
    k, M, C = gps.shape
    N, H, W = nhw
    rows = dict(zip(kinds, gps, strict=True))
    gm, ga = rows.get("max"), rows.get("avg")
    out = gx if gx is not None else gps.new_empty(M, C)
    kernel("pools_backward", gps.dtype)(
        None if gm is None else gm.data_ptr(), indices[0].data_ptr() if indices else None,
        None if ga is None else ga.data_ptr(), out.data_ptr(), N, H, W, C, int(gx is not None),
    )  # fmt: skip
    return out
