"""Weighted sum of K stacked branch outputs: out = Σ_k w_k · y_k (the mixed op's final reduction).

Layout-agnostic: y is (K, M) with M the flattened branch shape, so any memory format works as
long as all K branches share it. With s = bytes per element of y:
- forward: reads K·M·s (+ K·4 for w), writes M·s.
- backward: reads (K + 1)·M·s (y and dout), writes K·M·s (dy) + n_blocks·K·4 partials; then
  reduce.sum_rows reads those n_blocks·K·4 and writes K·4 (dw).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .nhwc import check_launchable, device_guard
from .reduce import sum_rows

# Elements per program. Forward and backward are pure streaming: 8 fp32 per thread at 4 warps
# keeps enough bytes in flight per SM; the backward's partial buffer is then M/1024 rows of K.
_BLOCK = 1024


@triton.jit
def _weighted_sum_fwd_kernel(
    y_ptr,  # (K, M) stacked branch outputs, contiguous
    w_ptr,  # (K,) mixing weights
    out_ptr,  # (M,) Σ_k w_k · y_k
    K,
    M,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    y_k = y_ptr + offs  # advanced by M per branch: pointer arithmetic, no K·M int32 overflow
    for k in range(K):
        w_k = tl.load(w_ptr + k).to(tl.float32)
        acc += w_k * tl.load(y_k, mask=mask, other=0.0).to(tl.float32)
        y_k += M
    tl.store(out_ptr + offs, acc, mask=mask)


# out = Σ_k w_k y_k is linear in each y_k and in each w_k, so
#   ∂L/∂y_k[m] = w_k · dout[m]                  (elementwise: each program writes its own block)
#   ∂L/∂w_k    = Σ_m dout[m] · y_k[m]           (a reduction over all M elements)
# The w-gradient is reduced deterministically in two stages: program b writes its block's sums to
# partial[b, k] (one writer per slot, no atomics); reduce.sum_rows then adds the rows in order.
@triton.jit
def _weighted_sum_bwd_kernel(
    dout_ptr,  # (M,) upstream gradient
    y_ptr,  # (K, M) stacked branch outputs saved from the forward
    w_ptr,  # (K,) mixing weights
    dy_ptr,  # (K, M) out: gradient of each branch output
    partial_ptr,  # (n_blocks, K) fp32 out: per-block partial sums of dout · y_k
    K,
    M,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    dout = tl.load(dout_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y_k = y_ptr + offs
    dy_k = dy_ptr + offs
    for k in range(K):
        w_k = tl.load(w_ptr + k).to(tl.float32)
        tl.store(dy_k, w_k * dout, mask=mask)
        y = tl.load(y_k, mask=mask, other=0.0).to(tl.float32)
        tl.store(partial_ptr + pid * K + k, tl.sum(dout * y, axis=0))
        y_k += M
        dy_k += M


def _flat(ys: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    if w.dim() != 1 or ys.shape[0] != w.shape[0]:
        raise ValueError(f"ys (K, ...) and w (K,) disagree: {tuple(ys.shape)} vs {tuple(w.shape)}")
    check_launchable(ys, w)
    K = ys.shape[0]
    return ys.contiguous().view(K, -1), K, ys[0].numel()


def weighted_sum_fwd(ys: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """ys: (K, *S) stacked branch outputs; w: (K,) → (*S) Σ_k w[k] · ys[k]."""
    y, K, M = _flat(ys, w)
    out = torch.empty(ys.shape[1:], device=ys.device, dtype=ys.dtype)
    with device_guard(ys):
        _weighted_sum_fwd_kernel[(triton.cdiv(M, _BLOCK),)](
            y, w.contiguous(), out, K, M, BLOCK=_BLOCK
        )
    return out


def weighted_sum_bwd(
    dout: torch.Tensor, ys: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """dout: (*S); ys: (K, *S); w: (K,) → (dys (K, *S), dw (K,))."""
    y, K, M = _flat(ys, w)
    n_blocks = triton.cdiv(M, _BLOCK)
    dys = torch.empty_like(y)
    partial = torch.empty(n_blocks, K, device=ys.device, dtype=torch.float32)
    with device_guard(ys):
        _weighted_sum_bwd_kernel[(n_blocks,)](
            dout.contiguous(), y, w.contiguous(), dys, partial, K, M, BLOCK=_BLOCK
        )
    return dys.view(ys.shape), sum_rows(partial, dtype=w.dtype)
