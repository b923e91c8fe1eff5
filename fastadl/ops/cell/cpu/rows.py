"""A fan-out group's BatchNorm and mixing work (fastadl/ops/cell/fanout.py), each a single pass.

On CPU tensors the C++ kernels (fastadl/kernels/cpu/bn_rows.cpp) do it where they are built;
otherwise (CUDA, no compiler) the same formulas run as ATen calls (the ``_aten`` twins).

Operands are views of shape (P, Q, n, E, C): path, position within a path, row (a BatchNorm'd
branch kind), edge, channel; any strides for the first four axes (0 broadcasts), channels
contiguous. The kernels read the strides, so the callers' layouts need no copies. Statistics
are batch statistics over Q (biased variance); the kernels accumulate them in double.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from fastadl.kernels.cpu import accepts, kernel

_S4 = ctypes.c_int64 * 4
_S2 = ctypes.c_int64 * 2


def _rows(t: Tensor):
    """The strides of a (P, Q, n, E, C) view with contiguous channels."""
    s = t.stride()
    if len(s) != 5 or (s[4] != 1 and t.shape[4] > 1):
        raise ValueError(f"expected a (P, Q, n, E, C) view with contiguous C, got {t.shape}")
    return _S4(s[0], s[1], s[2], s[3])


def _w(w: Tensor):
    return _S2(*w.stride())


def _edge_channel_merge(*ts: Tensor) -> bool:
    """Whether every operand's (e, c) axes are one contiguous run (stride C along e), so the
    kernels may treat them as one long channel axis (E' = 1, C' = E·C): longer inner loops."""
    C = ts[0].shape[-1]
    return ts[0].shape[-2] > 1 and all(t.stride(-2) == C for t in ts)


def _bn_forward_native(z: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """bn_forward_ by the C++ kernel."""
    P, Q, n, E, C = z.shape
    mean, var, inv = (z.new_empty(P, n, E, C) for _ in range(3))
    strides = _rows(z)
    nk, Ek, Ck = n, E, C  # the kernel's view: rows, edges and channels merged where contiguous
    if E == 1 or z.stride(3) == C:
        Ek, Ck = 1, E * C
        if n == 1 or z.stride(2) == E * C:
            nk, Ck = 1, n * E * C
    fn = kernel("bn_forward", z.dtype)
    fn(
        z.data_ptr(),
        strides,
        mean.data_ptr(),
        var.data_ptr(),
        inv.data_ptr(),
        P,
        Q,
        nk,
        Ek,
        Ck,
        eps,
    )
    return mean, var, inv


def _mix_rows_native(out: Tensor, x: Tensor, w: Tensor, accumulate: bool) -> None:
    """mix_rows by the C++ kernel."""
    P, Q, n, E, C = x.shape
    if not out.is_contiguous() or out.shape != (P, Q, E, C):
        raise ValueError(f"out must be a contiguous {(P, Q, E, C)}, got {tuple(out.shape)}")
    Ek, Ck = (1, E * C) if _edge_channel_merge(x) else (E, C)
    fn = kernel("mix_rows", x.dtype)
    fn(out.data_ptr(), x.data_ptr(), _rows(x), w.data_ptr(), _w(w), P, Q, n, Ek, Ck, C,
       int(accumulate))  # fmt: skip


def _bn_backward_native(g: Tensor, xhat: Tensor, inv: Tensor, gz: Tensor, w: Tensor | None = None,
                mask: Tensor | None = None, want_gsum: bool = False) -> Tensor | None:  # fmt: skip
    """bn_backward by the C++ kernel."""
    P, Q, n, E, C = xhat.shape
    gsum = xhat.new_empty(n, E) if want_gsum else None
    merge = _edge_channel_merge(g, xhat, inv, gz, *(() if mask is None else (mask,)))
    Ek, Ck = (1, E * C) if merge else (E, C)
    kernel("bn_backward", xhat.dtype)(
        g.data_ptr(), _rows(g), None if mask is None else mask.data_ptr(),
        None if mask is None else _rows(mask), xhat.data_ptr(), _rows(xhat), inv.data_ptr(),
        _S4(*inv.stride()[:3], 0), None if w is None else w.data_ptr(),
        None if w is None else _w(w), gz.data_ptr(), _rows(gz),
        None if gsum is None else gsum.data_ptr(), P, Q, n, Ek, Ck, C,
    )  # fmt: skip
    return gsum


def _mix_backward_native(
    g: Tensor, x: Tensor, w: Tensor, want_gw: bool
) -> tuple[Tensor, Tensor | None]:
    """mix_backward by the C++ kernel."""
    n, M, C = x.shape
    E = g.shape[1]
    if not (x.is_contiguous() and g.is_contiguous()):
        raise ValueError("mix_backward needs contiguous x and g")
    gx = x.new_empty(n, M, C)
    gw = x.new_empty(n, E) if want_gw else None
    kernel("mix_backward", x.dtype)(g.data_ptr(), x.data_ptr(), w.data_ptr(), _w(w), gx.data_ptr(),
                           None if gw is None else gw.data_ptr(), n, M, E, C)  # fmt: skip
    return gx, gw


# Channel counts where the C++ per-edge 1x1 convs beat MKL's block-diagonal/batched GEMMs on the
# search's shapes (1 thread: 3x at 8 channels, 1.5x at 16, 1.3x at 32; at 64 MKL is faster).
NATIVE_POINTWISE_CHANNELS = (8, 16, 32)


def _pointwise_rows(a: Tensor, b: Tensor) -> bool:
    """Whether the 1×1 kernels take (M, R, E, C) operands a, b: a channel count they are faster
    at, and contiguous (r, e, c) rows in both."""
    M, R, E, C = a.shape
    rows = (R * E * C, E * C, C, 1)
    return C in NATIVE_POINTWISE_CHANNELS and accepts(a) and a.stride() == b.stride() == rows


def pointwise_native(d: Tensor, pw: Tensor, out: Tensor, transpose: bool) -> bool:
    """out[m, r, e] = pw[r, e] @ d[m, r, e] (pwᵀ with ``transpose``) by the C++ kernel, for d,
    out (M, R, E, C) with contiguous (r, e, c) rows and pw (R, E, C, C); False (nothing done)
    where the kernel is not the faster route."""
    M, R, E, C = d.shape
    if not _pointwise_rows(d, out):
        return False
    sm = R * E * C
    fn = kernel("pointwise", d.dtype)
    fn(d.data_ptr(), out.data_ptr(), pw.data_ptr(), _S4(*pw.stride()), M, sm, R, E, C,
       int(transpose))  # fmt: skip
    return True


def pointwise_weight_grad_native(gz: Tensor, d: Tensor) -> Tensor | None:
    """Σ_m gz[m, r, e]ᵀ d[m, r, e] as (R, E, C, C) (out, in) by the C++ kernel, for gz, d
    (M, R, E, C) with contiguous (r, e, c) rows; None where the kernel is not the route."""
    M, R, E, C = gz.shape
    if not _pointwise_rows(gz, d):
        return None
    sm = R * E * C
    gw = gz.new_empty(R, E, C, C)
    kernel("pointwise_wgrad", gz.dtype)(gz.data_ptr(), d.data_ptr(), gw.data_ptr(), M, sm, R, E, C)
    return gw


def _bn_forward_aten(z: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    mean = z.mean(1)
    z.sub_(mean.unsqueeze(1))
    var = (z * z).mean(1)
    inv = (var + eps).rsqrt_()
    z.mul_(inv.unsqueeze(1))
    return mean, var, inv


def _mix_rows_aten(out: Tensor, x: Tensor, w: Tensor, accumulate: bool) -> None:
    n, E = w.shape
    s = (x * w.view(1, 1, n, E, 1)).sum(2)
    out.add_(s) if accumulate else out.copy_(s)


# The ATen twins below sum over positions in double, as the C++ kernels do: these sums (BN's
# projections, the mixing weights' gradients) are small differences of large terms over a
# dimension that is not the innermost, and in float α's gradients on this route were 2.3×
# further from float64 than the reference's on average (issue 23, docs/TESTING.md).
def _bn_backward_aten(g, xhat, inv, gz, w=None, mask=None, want_gsum=False):
    Q, n, E = xhat.shape[1], xhat.shape[2], xhat.shape[3]
    if mask is not None:
        g = g * (mask > 0)
    s = (g * xhat).sum(1, dtype=torch.float64)  # (P, n, E, C)
    mean = g.mean(1, keepdim=True, dtype=torch.float64).to(g.dtype)
    a = inv if w is None else inv * w.view(1, n, E, 1)
    proj = (a * s / Q).to(g.dtype).unsqueeze(1)
    gz.copy_(a.unsqueeze(1) * (g - mean) - proj * xhat)
    return s.sum((0, 3)).to(g.dtype) if want_gsum else None


def _mix_backward_aten(g, x, w, want_gw):
    n, E = w.shape
    gx = (g.unsqueeze(0) * w.view(n, 1, E, 1)).sum(2)
    if not want_gw:
        return gx, None
    return gx, (g.unsqueeze(0) * x.unsqueeze(2)).sum((1, 3), dtype=torch.float64).to(x.dtype)


def bn_forward_(z: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Normalise z (P, Q, n, E, C) in place over Q; returns (mean, biased var, 1/sqrt(var+eps)),
    each (P, n, E, C)."""
    return (_bn_forward_native if accepts(z) else _bn_forward_aten)(z, eps)


def mix_rows(out: Tensor, x: Tensor, w: Tensor, accumulate: bool) -> None:
    """out[p, q, e] (+)= Σ_r w[r, e] x[p, q, r, e]; out (P, Q, E, C) contiguous, x (P, Q, n, E, C),
    w (n, E)."""
    (_mix_rows_native if accepts(x) else _mix_rows_aten)(out, x, w, accumulate)


def bn_backward(g: Tensor, xhat: Tensor, inv: Tensor, gz: Tensor, w: Tensor | None = None,
                mask: Tensor | None = None, want_gsum: bool = False) -> Tensor | None:  # fmt: skip
    """gz ← w ι (g' - mean g' - x̂ mean(g'·x̂)) with g' = g·[mask > 0]: g, x̂, gz, mask
    (P, Q, n, E, C) views (gz may be g itself), inv (P, n, E, C), w (n, E) or None for 1.
    Returns Σ_{p,q,c} g'·x̂ (n, E) when want_gsum (a final row's mixing-weight gradient)."""
    fn = _bn_backward_native if accepts(xhat) else _bn_backward_aten
    return fn(g, xhat, inv, gz, w, mask, want_gsum)


def mix_backward(g: Tensor, x: Tensor, w: Tensor, want_gw: bool) -> tuple[Tensor, Tensor | None]:
    """Rows x (n, M, C) shared by the E edges, weighted by w (n, E), dL/d out = g (M, E, C)
    → (dL/dx (n, M, C), dL/dw (n, E) or None)."""
    return (_mix_backward_native if accepts(x) else _mix_backward_aten)(g, x, w, want_gw)
