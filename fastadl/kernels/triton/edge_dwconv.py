"""Fused first stage of the four conv branches of E edges that read the same input: read x once,
write ReLU(x) convolved by each edge's four depthwise filters that open sep_conv_3x3,
sep_conv_5x5, dil_conv_3x3 and dil_conv_5x5 (fastadl/ops/reference.py): 3×3 d1, 5×5 d1, 3×3 d2,
5×5 d2, all 'same' padded. E = 1 is one edge; E > 1 is a cell state's fan-out (every edge j → i
reading state j), which the cell-level search path computes in one launch.

Tap offsets, as (dh, dw) from the output pixel:
  s3 {-1..1}²    s5 {-2..2}²    d3 {-2, 0, 2}²    d5 {-4, -2, 0, 2, 4}²
Their union has 41 offsets (s5's 25 plus d5's 16 outer ones). The forward walks the 9×9 square
of offsets {-4..4}² at compile time and loads x once per offset in the union, feeding every
filter of every weight set that uses it: 41 tile loads instead of the 68·E that 4·E separate
convs would make. The weight sets are a tensor axis of the accumulators (E_BLOCK sets per
program; more sets take more programs along grid axis 2).

Layouts: x (N, H, W, C); filters (E, C, k·k) per branch (one edge's torch (C, 1, k, k) weight is
the same memory as (1, C, k·k)); output y (E, 4, N, H, W, C) contiguous: weight set, branch
(s3, s5, d3, d5 as in PRIMITIVES), then channels-last.

Bytes per call (s = bytes per element, P = N·H·W; the shifted tap reads hit L1/L2):
- forward: reads ⌈E/E_BLOCK⌉·P·C·s (x) + 68·E·C·s (filters), writes 4·E·P·C·s.
- input grad: reads 4·E·P·C·s (dy) + P·C·s (x, for the ReLU mask) + 68·E·C·s, writes P·C·s.
- weight grad: reads E·P·C·s (x, once per weight set; L2 absorbs most) + 4·E·P·C·s (dy),
  writes R·68·E·C·4 partials (R rows, nhwc.reduce_grid); one reduce.sum_rows reads them back
  and writes 68·E·C·s (all filter grads).
Against 4·E dwconv calls (each with its own ReLU) this saves 4·E − 1 reads of x forward, and
the partial dx sums of 4·E convs backward (dx is one gather over all E·68 filter taps). The
backward is two kernels, not one: a single pass would need per-tap reductions in every tile
(68 cross-warp sums) and either spill registers or write partials larger than x.
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
# (tile elements, num_warps); see nhwc.py. The forward's tile is shared by the E_BLOCK weight
# sets of a program (accumulators [E_BLOCK, BLOCK_P, BLOCK_C]), so its pixels shrink as E_BLOCK
# grows. ptxas sm_90 (tests/kernels/triton/test_kernels_compile_sm90.py):
# no spills at any E_BLOCK and channel block.
_FWD_CFG = (512, 8)
_INPUT_CFG = (256, 8)
_WGRAD_CFG = (64, 8)  # × 96 tap rows in the four 3-D accumulators; one weight set per program
# Weight sets per forward program: up to 4 share one read of each x neighbourhood tile; a
# fan-out of 5 (state 0 or 1 of a 5-block cell) takes two programs.
MAX_E_BLOCK = 4


def e_block(E: int) -> int:
    """Weight sets per program for E sets: the next power of two, at most MAX_E_BLOCK."""
    return min(triton.next_power_of_2(E), MAX_E_BLOCK)


@triton.jit
def _tap(acc, v, w_ptr, w_offs, w_mask, T: tl.constexpr):
    """acc[e] + v · wt[e, :, T] for a bank of (E, C, KK) filters: acc (E_BLOCK, BLOCK_P,
    BLOCK_C), v (1, BLOCK_P, BLOCK_C) shared by the sets, w_offs (E_BLOCK, BLOCK_C) the offsets
    of tap 0 of this program's sets and channels."""
    wv = tl.load(w_ptr + w_offs + T, mask=w_mask, other=0.0).to(tl.float32)
    return acc + v * wv[:, None, :]


@triton.jit
def _tap2(acc, v, w_row_ptr, mask_c, T: tl.constexpr):
    """acc + v · wt[:, T] for one set's filters; w_row_ptr: (BLOCK_C,) pointers to their tap 0."""
    wv = tl.load(w_row_ptr + T, mask=mask_c, other=0.0).to(tl.float32)
    return acc + v * wv[None, :]


@triton.jit
def _filter_offsets(offs_e, offs_c, mask_e, mask_c, C):
    """Offsets of tap 0 in a (E, C, 9) and a (E, C, 25) filter bank, and their mask."""
    row = offs_e[:, None] * C + offs_c[None, :]
    return row * 9, row * 25, mask_e[:, None] & mask_c[None, :]


@triton.jit
def _edge_dwconv_fwd_kernel(
    x_ptr,  # (N, H, W, C) input, channels-last contiguous
    w_s3_ptr,  # (E, C, 9) 3×3 dilation-1 filters
    w_s5_ptr,  # (E, C, 25) 5×5 dilation-1 filters
    w_d3_ptr,  # (E, C, 9) 3×3 dilation-2 filters
    w_d5_ptr,  # (E, C, 25) 5×5 dilation-2 filters
    y_ptr,  # (E, 4, N, H, W, C) out: the four depthwise convs of ReLU(x) per weight set
    P,
    H,
    W,
    C,
    E,
    E_BLOCK: tl.constexpr,  # weight sets per program (grid axis 2 walks the rest)
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    center, h, w, mask_p, offs_c, mask_c = tile_coords(
        tl.program_id(0), P, H, W, C, BLOCK_P, BLOCK_C
    )
    offs_e = tl.program_id(2) * E_BLOCK + tl.arange(0, E_BLOCK)
    mask_e = offs_e < E
    w9, w25, w_mask = _filter_offsets(offs_e, offs_c, mask_e, mask_c, C)
    acc_s3 = tl.zeros([E_BLOCK, BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_s5 = tl.zeros([E_BLOCK, BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_d3 = tl.zeros([E_BLOCK, BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_d5 = tl.zeros([E_BLOCK, BLOCK_P, BLOCK_C], dtype=tl.float32)
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
                xv = xv[None, :, :]
                if S3:
                    acc_s3 = _tap(acc_s3, xv, w_s3_ptr, w9, w_mask, T_S3)
                if S5:
                    acc_s5 = _tap(acc_s5, xv, w_s5_ptr, w25, w_mask, T_S5)
                if D3:
                    acc_d3 = _tap(acc_d3, xv, w_d3_ptr, w9, w_mask, T_D3)
                if D5:
                    acc_d5 = _tap(acc_d5, xv, w_d5_ptr, w25, w_mask, T_D5)
    dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
    # y[e, b] starts at (4·e + b)·P·C; int64 so that 4·E·P·C may pass 2³¹
    y_e = y_ptr + (offs_e.to(tl.int64) * 4 * P * C)[:, None, None] + dst[None, :, :]
    m = mask_e[:, None, None] & m[None, :, :]
    tl.store(y_e, acc_s3, mask=m)
    tl.store(y_e + P * C, acc_s5, mask=m)
    tl.store(y_e + 2 * P * C, acc_d3, mask=m)
    tl.store(y_e + 3 * P * C, acc_d5, mask=m)


# Branch b of set e computes y_eb[p] = Σ_t w_eb[t] · r(x[p + o_t]) with r = ReLU, the sum over
# b's taps t. x[q] feeds y_eb[q − o_t] through tap t, so
#   ∂L/∂x[q] = [x[q] > 0] · Σ_e Σ_b Σ_t w_eb[t] · dy_eb[q − o_t]
# gathered per input pixel over all E·68 (set, branch, tap) triples: every dx element is written
# by exactly one program, which walks all weight sets itself (no races, no atomics), and the
# partial sums never leave registers. The sets are a loop, not a tensor axis as in the forward:
# each set reads its own dy, so there is no load to share, and a [sets, pixels, channels]
# accumulator only raised register pressure (254 registers at sm_90 for 4 sets).
@triton.jit
def _edge_dwconv_bwd_input_kernel(
    x_ptr,  # (N, H, W, C) forward input (for the ReLU mask)
    dy_ptr,  # (E, 4, N, H, W, C) gradient of the output
    w_s3_ptr,  # (E, C, 9)
    w_s5_ptr,  # (E, C, 25)
    w_d3_ptr,  # (E, C, 9)
    w_d5_ptr,  # (E, C, 25)
    dx_ptr,  # (N, H, W, C) out: input gradient
    P,
    H,
    W,
    C,
    E,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    center, h, w, mask_p, offs_c, mask_c = tile_coords(
        tl.program_id(0), P, H, W, C, BLOCK_P, BLOCK_C
    )
    dx = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    # set e's dy and filter rows; advanced per set (pointer arithmetic: no e·4·P·C in int32)
    dy_e = dy_ptr
    w_s3, w_s5, w_d3, w_d5 = w_s3_ptr + offs_c * 9, w_s5_ptr + offs_c * 25, w_d3_ptr, w_d5_ptr
    w_d3, w_d5 = w_d3 + offs_c * 9, w_d5 + offs_c * 25
    for _ in range(E):
        for i in tl.static_range(9):  # dy read at q − o for o = (i − 4, j − 4)
            for j in tl.static_range(9):
                S3 = (i >= 3) and (i <= 5) and (j >= 3) and (j <= 5)
                S5 = (i >= 2) and (i <= 6) and (j >= 2) and (j <= 6)
                D5 = (i % 2 == 0) and (j % 2 == 0)
                D3 = S5 and D5
                T_S3, T_S5 = (i - 3) * 3 + j - 3, (i - 2) * 5 + j - 2
                T_D3, T_D5 = (i // 2 - 1) * 3 + j // 2 - 1, (i // 2) * 5 + j // 2
                if S5 or D5:
                    src, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 4 - i, 4 - j)
                    src = dy_e + src
                    if S3:
                        g = tl.load(src, mask=m, other=0.0).to(tl.float32)
                        dx = _tap2(dx, g, w_s3, mask_c, T_S3)
                    if S5:
                        g = tl.load(src + P * C, mask=m, other=0.0).to(tl.float32)
                        dx = _tap2(dx, g, w_s5, mask_c, T_S5)
                    if D3:
                        g = tl.load(src + 2 * P * C, mask=m, other=0.0).to(tl.float32)
                        dx = _tap2(dx, g, w_d3, mask_c, T_D3)
                    if D5:
                        g = tl.load(src + 3 * P * C, mask=m, other=0.0).to(tl.float32)
                        dx = _tap2(dx, g, w_d5, mask_c, T_D5)
        dy_e += 4 * P * C
        w_s3, w_s5, w_d3, w_d5 = w_s3 + 9 * C, w_s5 + 25 * C, w_d3 + 9 * C, w_d5 + 25 * C
    dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
    # compared in fp32: the interpreter holds bf16 as raw bits, where `> 0` is wrong
    dx = tl.where(tl.load(x_ptr + dst, mask=m, other=0.0).to(tl.float32) > 0, dx, 0.0)
    tl.store(dx_ptr + dst, dx, mask=m)


# ∂L/∂w_eb[c, t] = Σ_p dy_eb[p, c] · r(x[p + o_t, c]) for each set e and branch b: 4·E reductions
# over all N·H·W pixels, as in dwconv's weight grad. Program (r, cb, e) walks TILES pixel tiles
# of set e, adding each branch's per-tap products into its own [taps, BLOCK_P, BLOCK_C] register
# accumulator (x's tile neighbourhood is re-read from L1 per branch), reduces them over pixels
# once and writes its slots of partial row r. A row holds, branch-major, [s3 of sets 0..E−1 |
# s5 of all sets | d3 | d5], each set's block laid out (C, taps), so the reduced row splits into
# the four (E, C, taps) filter-gradient banks without a copy. One writer per slot, no atomics;
# reduce.sum_rows adds the rows in a fixed order.
@triton.jit
def _edge_dwconv_bwd_weight_kernel(
    x_ptr,  # (N, H, W, C) forward input
    dy_ptr,  # (E, 4, N, H, W, C) gradient of the output
    partial_ptr,  # (n_rows, 68·E·C) fp32 out: per-program weight-gradient sums, layout above
    P,
    H,
    W,
    C,
    E,
    TILES,  # pixel tiles per program
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    e = tl.program_id(2)
    dy_e = dy_ptr + e.to(tl.int64) * 4 * P * C
    acc_s3 = tl.zeros([16, BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_s5 = tl.zeros([32, BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_d3 = tl.zeros([16, BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_d5 = tl.zeros([32, BLOCK_P, BLOCK_C], dtype=tl.float32)
    for k in range(TILES):
        center, h, w, mask_p, offs_c, mask_c = tile_coords(
            tl.program_id(0) * TILES + k, P, H, W, C, BLOCK_P, BLOCK_C
        )
        dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
        g = tl.load(dy_e + dst, mask=m, other=0.0).to(tl.float32)
        acc_s3 = tap_products(acc_s3, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
                              3, 1, True, 16)  # fmt: skip
        g = tl.load(dy_e + P * C + dst, mask=m, other=0.0).to(tl.float32)
        acc_s5 = tap_products(acc_s5, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
                              5, 1, True, 32)  # fmt: skip
        g = tl.load(dy_e + 2 * P * C + dst, mask=m, other=0.0).to(tl.float32)
        acc_d3 = tap_products(acc_d3, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
                              3, 2, True, 16)  # fmt: skip
        g = tl.load(dy_e + 3 * P * C + dst, mask=m, other=0.0).to(tl.float32)
        acc_d5 = tap_products(acc_d5, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
                              5, 2, True, 32)  # fmt: skip
    row = partial_ptr + tl.program_id(0).to(tl.int64) * (68 * E * C)
    store_tap_sums(row + e * (9 * C), acc_s3, C, 9, 16, BLOCK_C)
    store_tap_sums(row + E * (9 * C) + e * (25 * C), acc_s5, C, 25, 32, BLOCK_C)
    store_tap_sums(row + E * (34 * C) + e * (9 * C), acc_d3, C, 9, 16, BLOCK_C)
    store_tap_sums(row + E * (43 * C) + e * (25 * C), acc_d5, C, 25, 32, BLOCK_C)


def _check(x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
    """x as contiguous (N, H, W, C) and the number of weight sets E; filters must be (E, C, k·k)."""
    x = nhwc.check_nhwc(x)
    C, E = x.shape[-1], weights[0].shape[0] if weights[0].dim() == 3 else -1
    for w, (k, _) in zip(weights, BRANCHES, strict=True):
        if E < 1 or w.shape != (E, C, k * k):
            raise ValueError(
                f"expected (E, C={C}, {k * k}) filters for the {k}×{k} branches with one E ≥ 1 "
                f"for all four, got {[tuple(t.shape) for t in weights]}"
            )
    return x, E


def edge_dwconv_fwd(
    x: torch.Tensor, w_s3: torch.Tensor, w_s5: torch.Tensor, w_d3: torch.Tensor, w_d5: torch.Tensor
) -> torch.Tensor:
    """x: (N, H, W, C); filters (E, C, k·k) for (3, d1), (5, d1), (3, d2), (5, d2)
    → y (E, 4, N, H, W, C): y[e, b] = the depthwise conv of ReLU(x) by set e's branch-b filter."""
    ws = tuple(w.contiguous() for w in (w_s3, w_s5, w_d3, w_d5))
    x, E = _check(x, ws)
    N, H, W, C = x.shape
    y = torch.empty((E, 4, N, H, W, C), device=x.device, dtype=x.dtype)
    eb = e_block(E)
    bp, bc = nhwc.blocks(C, _FWD_CFG[0] // eb)
    with nhwc.device_guard(x):
        _edge_dwconv_fwd_kernel[(*nhwc.grid(N * H * W, C, bp, bc), triton.cdiv(E, eb))](
            x, *ws, y, N * H * W, H, W, C, E,
            E_BLOCK=eb, BLOCK_P=bp, BLOCK_C=bc, num_warps=_FWD_CFG[1],
        )  # fmt: skip
    return y


def split_filter_grads(dw: torch.Tensor, E: int, C: int) -> tuple[torch.Tensor, ...]:
    """edge_dwconv_bwd's flat (68·E·C,) filter gradients → views (E, C, 9), (E, C, 25),
    (E, C, 9), (E, C, 25) for the s3, s5, d3, d5 banks."""
    parts = dw.split([t * E * C for t in _TAPS])
    return tuple(d.view(E, C, t) for d, t in zip(parts, _TAPS, strict=True))


def edge_dwconv_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    w_s3: torch.Tensor,
    w_s5: torch.Tensor,
    w_d3: torch.Tensor,
    w_d5: torch.Tensor,
    programs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """dy: (E, 4, N, H, W, C); x, filters as edge_dwconv_fwd → (dx (N, H, W, C), dw (68·E·C,)):
    all filter gradients in one buffer, banks s3 | s5 | d3 | d5 (split_filter_grads views them).

    programs: partial rows of the weight-gradient reduction (default: nhwc.reduce_grid)."""
    ws = tuple(w.contiguous() for w in (w_s3, w_s5, w_d3, w_d5))
    x, E = _check(x, ws)
    N, H, W, C = x.shape
    P = N * H * W
    if dy.shape != (E, 4, N, H, W, C):
        raise ValueError(
            f"dy must be (E, 4, N, H, W, C) = {(E, 4, N, H, W, C)}, got {tuple(dy.shape)}"
        )
    dy = dy.contiguous()
    dx = torch.empty_like(x)
    bp, bc = nhwc.blocks(C, _INPUT_CFG[0])
    with nhwc.device_guard(x):
        _edge_dwconv_bwd_input_kernel[nhwc.grid(P, C, bp, bc)](
            x, dy, *ws, dx, P, H, W, C, E, BLOCK_P=bp, BLOCK_C=bc, num_warps=_INPUT_CFG[1]
        )
        bp, bc = nhwc.blocks(C, _WGRAD_CFG[0])
        g, tiles = nhwc.reduce_grid(P, C, bp, bc, x.device, sets=E, programs=programs)
        partial = torch.empty(g[0], sum(_TAPS) * E * C, device=x.device, dtype=torch.float32)
        _edge_dwconv_bwd_weight_kernel[(*g[:2], E)](
            x, dy, partial, P, H, W, C, E, tiles,
            BLOCK_P=bp, BLOCK_C=bc, num_warps=_WGRAD_CFG[1],
        )  # fmt: skip
    return dx, sum_rows(partial, dtype=w_s3.dtype)
