"""Fused 3×3 max-pool + avg-pool (stride 1, pad 1) on channels-last tensors, plus the per-channel
sums their BatchNorms need.

Semantics (as max_pool_3x3 / avg_pool_3x3 in fastadl/ops/reference.py):
- max: the largest in-image value of the 3×3 window (padding ignored); ties go to the first in
  row-major window order and NaN propagates, as in torch's max_pool2d, whose gradient we match.
- avg: the mean over the in-image values only (count_include_pad=False).
- stats (6, C): per channel Σ (max − m₀), Σ (max − m₀)², Σ (avg − a₀), Σ (avg − a₀)² over N·H·W,
  then the shifts m₀ and a₀: the max and avg pool at pixel 0. Sums are reduced
  deterministically (per-tile partial rows, then reduce.sum_rows). The shift is what keeps a
  BatchNorm's variance S₂/n − (S₁/n)² accurate in float32: unshifted, it cancels catastrophically
  when |mean| ≫ std, which pooled maps do reach (a 3×3 pool of a 2×2 map is nearly constant per
  image; at the tiny preset's coarsest level the unshifted sums lost 3 of float32's 7 digits).
  The variance does not depend on the shift, so its gradient treats m₀, a₀ as constants.
- argmax (N, H, W, C) int8: the window position 0…8 of each max, saved for the backward.

Bytes per call (s = bytes per element, P = N·H·W; the 9 shifted reads hit L1/L2):
- forward: reads P·C·s, writes 2·P·C·s + P·C (argmax) + n_tiles·4·C·4 partials; reduce.sum_rows
  reads those back and writes 4·C·4 (the shifts: 2·C·4 more).
- backward: reads 2·P·C·s (dmax, davg) + P·C (argmax), plus 2·P·C·s (the pool outputs) when the
  stats have a gradient; writes P·C·s.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import nhwc
from .nhwc import shifted, tile_coords
from .reduce import sum_rows

# (tile elements, num_warps); see nhwc.py. ptxas sm_90: forward ≈ 90 registers, backward (5
# gathered tensors × 9 taps) ≈ 110; no spills. The forward's tile also sets the stats partials:
# 4·C floats per 1,024 / C pixels.
_FWD_CFG = (1024, 8)
_BWD_CFG = (512, 8)


@triton.jit
def _window_count(h, w, H, W):
    """Number of in-image positions of the 3×3 window centred on (h, w)."""
    rows = tl.minimum(h + 1, H - 1) - tl.maximum(h - 1, 0) + 1
    cols = tl.minimum(w + 1, W - 1) - tl.maximum(w - 1, 0) + 1
    return (rows * cols).to(tl.float32)


@triton.jit
def _windows(x_ptr, center, h, w, mask_p, mask_c, H, W, C, BLOCK_P: tl.constexpr,
             BLOCK_C: tl.constexpr):  # fmt: skip
    """(max, window position of the max, avg) of the 3×3 windows centred on a tile's pixels."""
    best = tl.full([BLOCK_P, BLOCK_C], float("-inf"), dtype=tl.float32)
    arg = tl.full([BLOCK_P, BLOCK_C], -1, dtype=tl.int32)
    total = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for i in tl.static_range(3):
        for j in tl.static_range(3):
            src, m = shifted(center, h, w, mask_p, mask_c, H, W, C, i - 1, j - 1)
            v = tl.load(x_ptr + src, mask=m, other=0.0).to(tl.float32)
            # strict '>' keeps the first max; arg < 0 takes the first in-image value even if it
            # is -inf; v != v lets NaN win (torch's rule)
            take = m & ((v > best) | (arg < 0) | (v != v))
            best = tl.where(take, v, best)
            arg = tl.where(take, i * 3 + j, arg)
            total += v  # masked (padding) positions loaded as 0
    return best, arg, total / _window_count(h, w, H, W)[:, None]


@triton.jit
def _pool_fwd_kernel(
    x_ptr,  # (N, H, W, C) input, channels-last contiguous
    max_ptr,  # (N, H, W, C) out: 3×3 max pool
    avg_ptr,  # (N, H, W, C) out: 3×3 avg pool, padding excluded from the mean
    arg_ptr,  # (N, H, W, C) int8 out: window position 0…8 of each max
    partial_ptr,  # (n_tiles, 4, C) fp32 out: per-tile Σ (max − m₀), its squares, avg likewise
    shift_ptr,  # (2, C) fp32 out: m₀, a₀ = the max and avg pool at pixel 0
    P,
    H,
    W,
    C,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    center, h, w, mask_p, offs_c, mask_c = tile_coords(
        tl.program_id(0), P, H, W, C, BLOCK_P, BLOCK_C
    )
    best, arg, avg = _windows(x_ptr, center, h, w, mask_p, mask_c, H, W, C, BLOCK_P, BLOCK_C)
    dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
    tl.store(max_ptr + dst, best, mask=m)
    tl.store(avg_ptr + dst, avg, mask=m)
    tl.store(arg_ptr + dst, arg.to(tl.int8), mask=m)
    # every program recomputes the pools at pixel 0 (9 vector loads), the shift of its sums
    c0, h0, w0, m0, _, _ = tile_coords(0, P, H, W, C, 1, BLOCK_C)
    m_0, _, a_0 = _windows(x_ptr, c0, h0, w0, m0, mask_c, H, W, C, 1, BLOCK_C)
    m_0 = tl.where(mask_c[None, :], m_0, 0.0)  # channels past C hold -inf: keep NaN out
    best = tl.where(m, best - m_0, 0.0)
    avg = tl.where(m, avg - a_0, 0.0)
    row = partial_ptr + tl.program_id(0) * 4 * C + offs_c
    tl.store(row, tl.sum(best, axis=0), mask=mask_c)
    tl.store(row + C, tl.sum(best * best, axis=0), mask=mask_c)
    tl.store(row + 2 * C, tl.sum(avg, axis=0), mask=mask_c)
    tl.store(row + 3 * C, tl.sum(avg * avg, axis=0), mask=mask_c)
    if tl.program_id(0) == 0:  # one writer per shift slot
        tl.store(shift_ptr + offs_c[None, :], m_0, mask=mask_c[None, :])
        tl.store(shift_ptr + C + offs_c[None, :], a_0, mask=mask_c[None, :])


# Forward, with o_t = (i − 1, j − 1) the window offsets and a(o) the stored argmax position:
#   mx[o] = x[o + o_{a(o)}],   av[o] = (1 / n(o)) Σ_{t in image} x[o + o_t],
#   S1 = Σ_o (mx[o] − m₀), S2 = Σ_o (mx[o] − m₀)²  (A1, A2 likewise for av, with a₀),
# the shifts m₀, a₀ held constant (see the module docstring). The stats' gradients fold into
# per-element upstream gradients first:
#   gm[o] = dmx[o] + dS1 + 2·(mx[o] − m₀)·dS2,   ga[o] = dav[o] + dA1 + 2·(av[o] − a₀)·dA2.
# x[q] sits at window position t of output o = q − o_t, so
#   ∂L/∂x[q] = Σ_{t: q − o_t in image} ( ga[q − o_t] / n(q − o_t) + [a(q − o_t) = t] · gm[q − o_t] ).
# Gathered per input pixel: each dx element is written by exactly one program, no atomics.
@triton.jit
def _pool_bwd_kernel(
    dmax_ptr,  # (N, H, W, C) gradient of the max-pool output
    davg_ptr,  # (N, H, W, C) gradient of the avg-pool output
    dstats_ptr,  # (≥ 4, C) gradient of the stats' sum rows (read only when STATS_GRAD)
    shift_ptr,  # (2, C) the forward's shifts m₀, a₀ (read only when STATS_GRAD)
    max_ptr,  # (N, H, W, C) max-pool output (read only when STATS_GRAD)
    avg_ptr,  # (N, H, W, C) avg-pool output (read only when STATS_GRAD)
    arg_ptr,  # (N, H, W, C) int8 argmax window positions
    dx_ptr,  # (N, H, W, C) out: input gradient
    P,
    H,
    W,
    C,
    STATS_GRAD: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    center, h, w, mask_p, offs_c, mask_c = tile_coords(
        tl.program_id(0), P, H, W, C, BLOCK_P, BLOCK_C
    )
    if STATS_GRAD:
        d_s1 = tl.load(dstats_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
        d_s2 = tl.load(dstats_ptr + C + offs_c, mask=mask_c, other=0.0)[None, :]
        d_a1 = tl.load(dstats_ptr + 2 * C + offs_c, mask=mask_c, other=0.0)[None, :]
        d_a2 = tl.load(dstats_ptr + 3 * C + offs_c, mask=mask_c, other=0.0)[None, :]
        m_0 = tl.load(shift_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
        a_0 = tl.load(shift_ptr + C + offs_c, mask=mask_c, other=0.0)[None, :]
    dx = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for i in tl.static_range(3):
        for j in tl.static_range(3):
            # output o = q − o_t, with o_t = (i − 1, j − 1)
            src, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 1 - i, 1 - j)
            gm = tl.load(dmax_ptr + src, mask=m, other=0.0).to(tl.float32)
            ga = tl.load(davg_ptr + src, mask=m, other=0.0).to(tl.float32)
            if STATS_GRAD:
                mx = tl.load(max_ptr + src, mask=m, other=0.0).to(tl.float32)
                av = tl.load(avg_ptr + src, mask=m, other=0.0).to(tl.float32)
                gm += d_s1 + 2.0 * (mx - m_0) * d_s2
                ga += d_a1 + 2.0 * (av - a_0) * d_a2
            a = tl.load(arg_ptr + src, mask=m, other=-1)
            n = _window_count(h + (1 - i), w + (1 - j), H, W)[:, None]
            dx += tl.where(m, ga / n, 0.0) + tl.where(m & (a == i * 3 + j), gm, 0.0)
    dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
    tl.store(dx_ptr + dst, dx, mask=m)


def pool3x3_fwd(
    x: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x: (N, H, W, C) → (max, avg (N, H, W, C), stats (6, C) fp32 as in the module docstring,
    argmax (N, H, W, C) int8)."""
    x = nhwc.check_nhwc(x)
    N, H, W, C = x.shape
    mx, av = torch.empty_like(x), torch.empty_like(x)
    arg = torch.empty(x.shape, device=x.device, dtype=torch.int8)
    bp, bc = nhwc.blocks(C, _FWD_CFG[0])
    g = nhwc.grid(N * H * W, C, bp, bc)
    partial = torch.empty(g[0], 4 * C, device=x.device, dtype=torch.float32)
    stats = torch.empty(6, C, device=x.device, dtype=torch.float32)
    with nhwc.device_guard(x):
        _pool_fwd_kernel[g](
            x, mx, av, arg, partial, stats[4:], N * H * W, H, W, C,
            BLOCK_P=bp, BLOCK_C=bc, num_warps=_FWD_CFG[1],
        )  # fmt: skip
    sum_rows(partial, out=stats[:4].view(-1))
    return mx, av, stats, arg


def pool3x3_bwd(
    dmax: torch.Tensor,
    davg: torch.Tensor,
    dstats: torch.Tensor | None,
    mx: torch.Tensor,
    av: torch.Tensor,
    arg: torch.Tensor,
    stats: torch.Tensor,
) -> torch.Tensor:
    """Gradients of pool3x3_fwd's outputs (dstats (6, C) or None; its shift rows are ignored)
    and its saved outputs, stats included (for the shifts) → dx."""
    arg = nhwc.check_nhwc(arg)
    N, H, W, C = arg.shape
    dx = torch.empty(arg.shape, device=arg.device, dtype=dmax.dtype)
    stats_grad = dstats is not None
    dstats = dstats.contiguous().float() if stats_grad else dx  # dx: an unread placeholder
    shift = stats[4:].contiguous()
    bp, bc = nhwc.blocks(C, _BWD_CFG[0])
    with nhwc.device_guard(arg):
        _pool_bwd_kernel[nhwc.grid(N * H * W, C, bp, bc)](
            dmax.contiguous(), davg.contiguous(), dstats, shift, mx.contiguous(), av.contiguous(),
            arg, dx, N * H * W, H, W, C,
            STATS_GRAD=stats_grad, BLOCK_P=bp, BLOCK_C=bc, num_warps=_BWD_CFG[1],
        )  # fmt: skip
    return dx
