"""Fused first stage of an edge's four conv branches: read x once, write ReLU(x) convolved by
each of the four depthwise filters that open sep_conv_3x3, sep_conv_5x5, dil_conv_3x3 and
dil_conv_5x5 (fastadl/ops/reference.py): 3×3 d1, 5×5 d1, 3×3 d2, 5×5 d2, all 'same' padded.

Tap offsets, as (dh, dw) from the output pixel:
  s3 {-1..1}²    s5 {-2..2}²    d3 {-2, 0, 2}²    d5 {-4, -2, 0, 2, 4}²
Their union has 41 offsets (s5's 25 plus d5's 16 outer ones). The forward walks the 9×9 square
of offsets {-4..4}² at compile time and loads x once per offset in the union, feeding every
filter that uses it: 41 tile loads instead of the 68 that four separate convs would make.

Output: one (4, N, H, W, C) buffer, branch order (s3, s5, d3, d5) as in PRIMITIVES.

Bytes per call (s = bytes per element, P = N·H·W; the shifted tap reads hit L1/L2):
- forward: reads P·C·s (x) + 68·C·s (filters), writes 4·P·C·s.
- input grad: reads 4·P·C·s (dy) + P·C·s (x, for the ReLU mask) + 68·C·s, writes P·C·s.
- weight grad: reads P·C·s (x) + 4·P·C·s (dy), writes ⌈P/1024⌉·68·C·4 partials;
  reduce.sum_rows reads them back and writes 68·C·s (the four filter grads).
Against four dwconv calls (each with its own ReLU) this saves 3 reads of x forward, and 6 reads
of x plus 3 read+write passes of partial dx sums backward. The backward is two kernels, not one:
a single pass would need per-tap reductions in every tile (68 cross-warp sums) and either
spill registers or write partials larger than x; see the weight-grad kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import nhwc
from .dwconv import store_tap_sums, tap_products
from .nhwc import shifted, tile_coords
from .reduce import sum_rows

# (kernel size, dilation) of the four branches, in output order.
BRANCHES = ((3, 1), (5, 1), (3, 2), (5, 2))
_TAPS = tuple(k * k for k, _ in BRANCHES)  # 9, 25, 9, 25 → 68 partial columns per channel
# (tile elements, num_warps); see nhwc.py. ptxas sm_90: forward and input grad ≈ 126
# registers, weight grad ≈ 158; no spills.
_FWD_CFG = (512, 8)
_INPUT_CFG = (256, 8)
_WGRAD_CFG = (64, 8)  # × 96 tap rows in the four 3-D accumulators


@triton.jit
def _tap(acc, xv, w_ptr, offs_c, mask_c, T: tl.constexpr, KK: tl.constexpr):
    """acc + xv · wt[:, T] for a (C, KK) filter bank."""
    wv = tl.load(w_ptr + offs_c * KK + T, mask=mask_c, other=0.0).to(tl.float32)
    return acc + xv * wv[None, :]


@triton.jit
def _edge_dwconv_fwd_kernel(
    x_ptr,  # (N, H, W, C) input, channels-last contiguous
    w_s3_ptr,  # (C, 9) 3×3 dilation-1 filters
    w_s5_ptr,  # (C, 25) 5×5 dilation-1 filters
    w_d3_ptr,  # (C, 9) 3×3 dilation-2 filters
    w_d5_ptr,  # (C, 25) 5×5 dilation-2 filters
    y_s3_ptr,  # (N, H, W, C) out: dwconv_3x3_d1(ReLU(x))
    y_s5_ptr,  # (N, H, W, C) out: dwconv_5x5_d1(ReLU(x))
    y_d3_ptr,  # (N, H, W, C) out: dwconv_3x3_d2(ReLU(x))
    y_d5_ptr,  # (N, H, W, C) out: dwconv_5x5_d2(ReLU(x))
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
    acc_s3 = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_s5 = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_d3 = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_d5 = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for i in tl.static_range(9):  # offset (i − 4, j − 4); membership is decided at compile time
        for j in tl.static_range(9):
            S3 = (i >= 3) and (i <= 5) and (j >= 3) and (j <= 5)
            S5 = (i >= 2) and (i <= 6) and (j >= 2) and (j <= 6)
            D5 = (i % 2 == 0) and (j % 2 == 0)
            D3 = S5 and D5
            # the offset's tap index in each filter that has it (row-major within the filter)
            T_S3, T_S5 = (i - 3) * 3 + j - 3, (i - 2) * 5 + j - 2
            T_D3, T_D5 = (i // 2 - 1) * 3 + j // 2 - 1, (i // 2) * 5 + j // 2
            if S5 or D5:
                src, m = shifted(center, h, w, mask_p, mask_c, H, W, C, i - 4, j - 4)
                xv = tl.maximum(tl.load(x_ptr + src, mask=m, other=0.0).to(tl.float32), 0.0)
                if S3:
                    acc_s3 = _tap(acc_s3, xv, w_s3_ptr, offs_c, mask_c, T_S3, 9)
                if S5:
                    acc_s5 = _tap(acc_s5, xv, w_s5_ptr, offs_c, mask_c, T_S5, 25)
                if D3:
                    acc_d3 = _tap(acc_d3, xv, w_d3_ptr, offs_c, mask_c, T_D3, 9)
                if D5:
                    acc_d5 = _tap(acc_d5, xv, w_d5_ptr, offs_c, mask_c, T_D5, 25)
    dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
    tl.store(y_s3_ptr + dst, acc_s3, mask=m)
    tl.store(y_s5_ptr + dst, acc_s5, mask=m)
    tl.store(y_d3_ptr + dst, acc_d3, mask=m)
    tl.store(y_d5_ptr + dst, acc_d5, mask=m)


# Branch b computes y_b[p] = Σ_t w_b[t] · r(x[p + o_t]) with r = ReLU, the sum over b's taps t.
# x[q] feeds y_b[q − o_t] through tap t, so
#   ∂L/∂x[q] = [x[q] > 0] · Σ_b Σ_t w_b[t] · dy_b[q − o_t]
# gathered per input pixel over all 68 (branch, tap) pairs: every dx element is written by
# exactly one program (no races, no atomics), and the four partial dx sums never leave registers.
@triton.jit
def _edge_dwconv_bwd_input_kernel(
    x_ptr,  # (N, H, W, C) forward input (for the ReLU mask)
    dy_s3_ptr,  # (N, H, W, C) gradient of the 3×3 d1 output
    dy_s5_ptr,  # (N, H, W, C) gradient of the 5×5 d1 output
    dy_d3_ptr,  # (N, H, W, C) gradient of the 3×3 d2 output
    dy_d5_ptr,  # (N, H, W, C) gradient of the 5×5 d2 output
    w_s3_ptr,  # (C, 9)
    w_s5_ptr,  # (C, 25)
    w_d3_ptr,  # (C, 9)
    w_d5_ptr,  # (C, 25)
    dx_ptr,  # (N, H, W, C) out: input gradient
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
    dx = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for i in tl.static_range(9):  # dy read at q − o for o = (i − 4, j − 4)
        for j in tl.static_range(9):
            S3 = (i >= 3) and (i <= 5) and (j >= 3) and (j <= 5)
            S5 = (i >= 2) and (i <= 6) and (j >= 2) and (j <= 6)
            D5 = (i % 2 == 0) and (j % 2 == 0)
            D3 = S5 and D5
            # the offset's tap index in each filter that has it (row-major within the filter)
            T_S3, T_S5 = (i - 3) * 3 + j - 3, (i - 2) * 5 + j - 2
            T_D3, T_D5 = (i // 2 - 1) * 3 + j // 2 - 1, (i // 2) * 5 + j // 2
            if S5 or D5:
                src, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 4 - i, 4 - j)
                if S3:
                    g = tl.load(dy_s3_ptr + src, mask=m, other=0.0).to(tl.float32)
                    dx = _tap(dx, g, w_s3_ptr, offs_c, mask_c, T_S3, 9)
                if S5:
                    g = tl.load(dy_s5_ptr + src, mask=m, other=0.0).to(tl.float32)
                    dx = _tap(dx, g, w_s5_ptr, offs_c, mask_c, T_S5, 25)
                if D3:
                    g = tl.load(dy_d3_ptr + src, mask=m, other=0.0).to(tl.float32)
                    dx = _tap(dx, g, w_d3_ptr, offs_c, mask_c, T_D3, 9)
                if D5:
                    g = tl.load(dy_d5_ptr + src, mask=m, other=0.0).to(tl.float32)
                    dx = _tap(dx, g, w_d5_ptr, offs_c, mask_c, T_D5, 25)
    dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
    dx = tl.where(tl.load(x_ptr + dst, mask=m, other=0.0) > 0, dx, 0.0)
    tl.store(dx_ptr + dst, dx, mask=m)


# ∂L/∂w_b[c, t] = Σ_p dy_b[p, c] · r(x[p + o_t, c]) for each branch b: four reductions over all
# N·H·W pixels, as in dwconv's weight grad. Program (r, cb) walks TILES pixel tiles, adding each
# branch's per-tap products into its own [taps, BLOCK_P, BLOCK_C] register accumulator (x's tile
# neighbourhood is re-read from L1 per branch, DRAM reads it once), reduces them over pixels once,
# and writes partial row r: blocks [s3 | s5 | d3 | d5] of C·9, C·25, C·9, C·25 columns, each
# laid out (C, taps) so a reduced block is its filter's gradient. One writer per slot, no atomics;
# reduce.sum_rows adds the rows in a fixed order.
@triton.jit
def _edge_dwconv_bwd_weight_kernel(
    x_ptr,  # (N, H, W, C) forward input
    dy_s3_ptr,  # (N, H, W, C) gradient of the 3×3 d1 output
    dy_s5_ptr,  # (N, H, W, C) gradient of the 5×5 d1 output
    dy_d3_ptr,  # (N, H, W, C) gradient of the 3×3 d2 output
    dy_d5_ptr,  # (N, H, W, C) gradient of the 5×5 d2 output
    partial_ptr,  # (n_programs, 68·C) fp32 out: per-program weight-gradient sums, layout above
    P,
    H,
    W,
    C,
    TILES,  # pixel tiles per program
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    acc_s3 = tl.zeros([16, BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_s5 = tl.zeros([32, BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_d3 = tl.zeros([16, BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_d5 = tl.zeros([32, BLOCK_P, BLOCK_C], dtype=tl.float32)
    for k in range(TILES):
        center, h, w, mask_p, offs_c, mask_c = tile_coords(
            tl.program_id(0) * TILES + k, P, H, W, C, BLOCK_P, BLOCK_C
        )
        dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
        g = tl.load(dy_s3_ptr + dst, mask=m, other=0.0).to(tl.float32)
        acc_s3 = tap_products(acc_s3, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
                              3, 1, True, 16)  # fmt: skip
        g = tl.load(dy_s5_ptr + dst, mask=m, other=0.0).to(tl.float32)
        acc_s5 = tap_products(acc_s5, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
                              5, 1, True, 32)  # fmt: skip
        g = tl.load(dy_d3_ptr + dst, mask=m, other=0.0).to(tl.float32)
        acc_d3 = tap_products(acc_d3, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
                              3, 2, True, 16)  # fmt: skip
        g = tl.load(dy_d5_ptr + dst, mask=m, other=0.0).to(tl.float32)
        acc_d5 = tap_products(acc_d5, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
                              5, 2, True, 32)  # fmt: skip
    row = partial_ptr + tl.program_id(0) * (68 * C)
    store_tap_sums(row, acc_s3, C, 9, 16, BLOCK_C)
    store_tap_sums(row + 9 * C, acc_s5, C, 25, 32, BLOCK_C)
    store_tap_sums(row + 34 * C, acc_d3, C, 9, 16, BLOCK_C)
    store_tap_sums(row + 43 * C, acc_d5, C, 25, 32, BLOCK_C)


def _check(x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
    x = nhwc.check_nhwc(x)
    C = x.shape[-1]
    for w, (k, _) in zip(weights, BRANCHES, strict=True):
        if w.shape != (C, 1, k, k):
            raise ValueError(f"expected a (C={C}, 1, {k}, {k}) filter, got {tuple(w.shape)}")
    return x


def edge_dwconv_fwd(
    x: torch.Tensor, w_s3: torch.Tensor, w_s5: torch.Tensor, w_d3: torch.Tensor, w_d5: torch.Tensor
) -> torch.Tensor:
    """x: (N, H, W, C); filters (C, 1, k, k) for (3, d1), (5, d1), (3, d2), (5, d2)
    → (4, N, H, W, C): the four depthwise convs of ReLU(x), in that order."""
    ws = tuple(w.contiguous() for w in (w_s3, w_s5, w_d3, w_d5))
    x = _check(x, ws)
    N, H, W, C = x.shape
    y = torch.empty((4, N, H, W, C), device=x.device, dtype=x.dtype)
    bp, bc = nhwc.blocks(C, _FWD_CFG[0])
    _edge_dwconv_fwd_kernel[nhwc.grid(N * H * W, C, bp, bc)](
        x, *ws, y[0], y[1], y[2], y[3], N * H * W, H, W, C,
        BLOCK_P=bp, BLOCK_C=bc, num_warps=_FWD_CFG[1],
    )  # fmt: skip
    return y


def edge_dwconv_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    w_s3: torch.Tensor,
    w_s5: torch.Tensor,
    w_d3: torch.Tensor,
    w_d5: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """dy: (4, N, H, W, C); x, filters as edge_dwconv_fwd → (dx, dw_s3, dw_s5, dw_d3, dw_d5)."""
    ws = tuple(w.contiguous() for w in (w_s3, w_s5, w_d3, w_d5))
    x = _check(x, ws)
    dy = dy.contiguous()
    N, H, W, C = x.shape
    P = N * H * W
    dx = torch.empty_like(x)
    bp, bc = nhwc.blocks(C, _INPUT_CFG[0])
    _edge_dwconv_bwd_input_kernel[nhwc.grid(P, C, bp, bc)](
        x, dy[0], dy[1], dy[2], dy[3], *ws, dx, P, H, W, C,
        BLOCK_P=bp, BLOCK_C=bc, num_warps=_INPUT_CFG[1],
    )  # fmt: skip
    bp, bc = nhwc.blocks(C, _WGRAD_CFG[0])
    g, tiles = nhwc.reduce_grid(P, C, bp, bc)
    partial = torch.empty(g[0], sum(_TAPS) * C, device=x.device, dtype=torch.float32)
    _edge_dwconv_bwd_weight_kernel[g](
        x, dy[0], dy[1], dy[2], dy[3], partial, P, H, W, C, tiles,
        BLOCK_P=bp, BLOCK_C=bc, num_warps=_WGRAD_CFG[1],
    )  # fmt: skip
    cols = partial.split([t * C for t in _TAPS], dim=1)  # the four filters' column blocks
    dws = (
        sum_rows(c, dtype=w_s3.dtype).view(C, 1, k, k)
        for c, (k, _) in zip(cols, BRANCHES, strict=True)
    )
    return (dx, *dws)
