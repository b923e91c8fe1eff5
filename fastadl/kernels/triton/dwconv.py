"""Depthwise k×k convolution (k ∈ {3, 5}, dilation ∈ {1, 2}, stride 1, 'same' zero padding
pad = dilation·(k − 1)/2) on channels-last tensors, optionally with a ReLU fused on its input
(the ReLU → depthwise pair that opens every separable/dilated conv stage).

Semantics: out[n, h, w, c] = Σ_{i,j} wt[c, i, j] · r(x[n, h + i·d − pad, w + j·d − pad, c]),
r = ReLU or identity, i.e. F.conv2d(r(x), wt, padding=pad, dilation=d, groups=C) in NHWC.

Bytes per call (s = bytes per element, P = N·H·W, T = k² taps; a tile's T shifted reads overlap
and hit L1/L2, so DRAM sees about one pass over each operand):
- forward: reads P·C·s (x) + C·T·s (wt), writes P·C·s.
- input grad: reads P·C·s (dout) (+ P·C·s of x for the ReLU mask) + C·T·s, writes P·C·s.
- weight grad: reads 2·P·C·s (dout, x), writes R·C·T·4 partials (R programs per channel block,
  nhwc.reduce_grid: at most P/64); reduce.sum_rows reads them back and writes C·T·s.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import nhwc
from .nhwc import shifted, tile_coords
from .reduce import sum_rows

SUPPORTED = {(3, 1), (3, 2), (5, 1), (5, 2)}  # (kernel size, dilation)

# (tile elements, num_warps); see nhwc.py. ptxas sm_90, k = 5: forward and input grad ≈ 140
# registers, weight grad ≈ 80; no spills.
_GATHER_CFG = (512, 4)
_WGRAD_CFG = (128, 4)  # × up to 32 taps in the 3-D accumulator


@triton.jit
def _dwconv_fwd_kernel(
    x_ptr,  # (N, H, W, C) input, channels-last contiguous
    w_ptr,  # (C, KS·KS) depthwise filters (torch's (C, 1, KS, KS), contiguous)
    out_ptr,  # (N, H, W, C) output
    P,  # N·H·W
    H,
    W,
    C,
    KS: tl.constexpr,
    DIL: tl.constexpr,
    RELU: tl.constexpr,  # apply ReLU to x on load
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    center, h, w, mask_p, offs_c, mask_c = tile_coords(
        tl.program_id(0), P, H, W, C, BLOCK_P, BLOCK_C
    )
    PAD: tl.constexpr = DIL * (KS - 1) // 2
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for i in tl.static_range(KS):
        for j in tl.static_range(KS):
            src, m = shifted(center, h, w, mask_p, mask_c, H, W, C, i * DIL - PAD, j * DIL - PAD)
            xv = tl.load(x_ptr + src, mask=m, other=0.0).to(tl.float32)
            if RELU:
                xv = tl.maximum(xv, 0.0)
            wv = tl.load(w_ptr + offs_c * (KS * KS) + (i * KS + j), mask=mask_c, other=0.0)
            acc += xv * wv.to(tl.float32)[None, :]
    dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
    tl.store(out_ptr + dst, acc, mask=m)


# With tap offsets o_ij = (i·d − pad, j·d − pad), out[p] = Σ_ij wt[ij] · r(x[p + o_ij]). The
# input x[q] feeds out[q − o_ij] through tap ij, so
#   ∂L/∂x[q] = r'(x[q]) · Σ_ij wt[ij] · dout[q − o_ij]     (r'(x) = [x > 0] for the ReLU)
# a correlation of dout with the flipped filter, gathered per input pixel: every dx element is
# computed and written by exactly one program, so there are no write races and no atomics.
@triton.jit
def _dwconv_bwd_input_kernel(
    dout_ptr,  # (N, H, W, C) upstream gradient
    x_ptr,  # (N, H, W, C) forward input (read only when RELU, for the ReLU mask)
    w_ptr,  # (C, KS·KS) depthwise filters
    dx_ptr,  # (N, H, W, C) out: input gradient
    P,
    H,
    W,
    C,
    KS: tl.constexpr,
    DIL: tl.constexpr,
    RELU: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    center, h, w, mask_p, offs_c, mask_c = tile_coords(
        tl.program_id(0), P, H, W, C, BLOCK_P, BLOCK_C
    )
    PAD: tl.constexpr = DIL * (KS - 1) // 2
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for i in tl.static_range(KS):
        for j in tl.static_range(KS):
            src, m = shifted(center, h, w, mask_p, mask_c, H, W, C, PAD - i * DIL, PAD - j * DIL)
            g = tl.load(dout_ptr + src, mask=m, other=0.0).to(tl.float32)
            wv = tl.load(w_ptr + offs_c * (KS * KS) + (i * KS + j), mask=mask_c, other=0.0)
            acc += g * wv.to(tl.float32)[None, :]
    dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
    if RELU:
        # compared in fp32: the interpreter holds bf16 as raw bits, where `> 0` is wrong
        acc = tl.where(tl.load(x_ptr + dst, mask=m, other=0.0).to(tl.float32) > 0, acc, 0.0)
    tl.store(dx_ptr + dst, acc, mask=m)


@triton.jit
def tap_products(
    acc, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
    KS: tl.constexpr, DIL: tl.constexpr, RELU: tl.constexpr, T_PAD: tl.constexpr,
):  # fmt: skip
    """acc[t, p, c] + g[p, c] · r(x[p + o_t, c]) for the KS×KS taps o_t of a dilated 'same'
    filter (rows t ≥ KS² get zeros). The tap axis is a tensor axis: one gather loads all taps,
    and the products of many tiles add up elementwise before the one reduction at the end."""
    t = tl.arange(0, T_PAD)
    dh = (t // KS) * DIL - DIL * (KS - 1) // 2
    dw = (t % KS) * DIL - DIL * (KS - 1) // 2
    hh = h[None, :] + dh[:, None]
    ww = w[None, :] + dw[:, None]
    valid = (t < KS * KS)[:, None] & mask_p[None, :] & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
    src = center[None, :, :] + ((dh * W + dw) * C)[:, None, None]
    xv = tl.load(x_ptr + src, mask=valid[:, :, None] & mask_c[None, None, :], other=0.0)
    xv = xv.to(tl.float32)
    if RELU:
        xv = tl.maximum(xv, 0.0)
    return acc + g[None, :, :] * xv


# ∂L/∂wt[c, ij] = Σ_p dout[p, c] · r(x[p + o_ij, c]): a reduction over all N·H·W pixels, done in
# two deterministic stages. Program (b, cb) walks TILES consecutive pixel tiles, adds the
# per-tap products elementwise into a [taps, BLOCK_P, BLOCK_C] register accumulator, reduces it
# over pixels once and writes partial[b, c, ij] (one writer per slot, no atomics); then
# reduce.sum_rows adds the rows in a fixed order. The launch shape fixes every summation order,
# so results are bitwise stable run to run.
@triton.jit
def _dwconv_bwd_weight_kernel(
    dout_ptr,  # (N, H, W, C) upstream gradient
    x_ptr,  # (N, H, W, C) forward input
    partial_ptr,  # (n_programs, C, KS·KS) fp32 out: per-program weight-gradient sums
    P,
    H,
    W,
    C,
    TILES,  # pixel tiles per program
    KS: tl.constexpr,
    DIL: tl.constexpr,
    RELU: tl.constexpr,
    T_PAD: tl.constexpr,  # KS² rounded up to a power of two
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    acc = tl.zeros([T_PAD, BLOCK_P, BLOCK_C], dtype=tl.float32)
    for k in range(TILES):
        center, h, w, mask_p, offs_c, mask_c = tile_coords(
            tl.program_id(0) * TILES + k, P, H, W, C, BLOCK_P, BLOCK_C
        )
        dst, m = shifted(center, h, w, mask_p, mask_c, H, W, C, 0, 0)
        g = tl.load(dout_ptr + dst, mask=m, other=0.0).to(tl.float32)
        acc = tap_products(acc, g, x_ptr, center, h, w, mask_p, mask_c, H, W, C,
                           KS, DIL, RELU, T_PAD)  # fmt: skip
    store_tap_sums(partial_ptr + tl.program_id(0) * C * (KS * KS), acc, C, KS * KS, T_PAD, BLOCK_C)


@triton.jit
def store_tap_sums(row_ptr, acc, C, T: tl.constexpr, T_PAD: tl.constexpr, BLOCK_C: tl.constexpr):
    """row[c, t] = Σ_p acc[t, p, c] for this program's channel block; row is (C, T)."""
    t = tl.arange(0, T_PAD)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (t < T)[:, None] & (offs_c < C)[None, :]
    tl.store(row_ptr + offs_c[None, :] * T + t[:, None], tl.sum(acc, axis=1), mask=mask)


def _check(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> tuple[torch.Tensor, int]:
    x = nhwc.check_nhwc(x)
    C, k = x.shape[-1], weight.shape[-1]
    if weight.shape != (C, 1, k, k) or (k, dilation) not in SUPPORTED:
        raise ValueError(
            f"depthwise weight must be (C={C}, 1, k, k) with (k, dilation) in {sorted(SUPPORTED)}; "
            f"got {tuple(weight.shape)}, dilation={dilation}"
        )
    return x, k


def dwconv_fwd(
    x: torch.Tensor, weight: torch.Tensor, dilation: int = 1, relu: bool = False
) -> torch.Tensor:
    """x: (N, H, W, C); weight: (C, 1, k, k) → (N, H, W, C) depthwise conv of (ReLU(x) if relu)."""
    x, k = _check(x, weight, dilation)
    N, H, W, C = x.shape
    out = torch.empty_like(x)
    bp, bc = nhwc.blocks(C, _GATHER_CFG[0])
    with nhwc.device_guard(x):
        _dwconv_fwd_kernel[nhwc.grid(N * H * W, C, bp, bc)](
            x, weight.contiguous(), out, N * H * W, H, W, C,
            KS=k, DIL=dilation, RELU=relu, BLOCK_P=bp, BLOCK_C=bc, num_warps=_GATHER_CFG[1],
        )  # fmt: skip
    return out


def dwconv_bwd_input(
    dout: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, dilation: int = 1, relu: bool = False
) -> torch.Tensor:
    """dout, x: (N, H, W, C); weight: (C, 1, k, k) → dx (N, H, W, C)."""
    x, k = _check(x, weight, dilation)
    N, H, W, C = x.shape
    dx = torch.empty_like(x)
    bp, bc = nhwc.blocks(C, _GATHER_CFG[0])
    with nhwc.device_guard(x):
        _dwconv_bwd_input_kernel[nhwc.grid(N * H * W, C, bp, bc)](
            dout.contiguous(), x, weight.contiguous(), dx, N * H * W, H, W, C,
            KS=k, DIL=dilation, RELU=relu, BLOCK_P=bp, BLOCK_C=bc, num_warps=_GATHER_CFG[1],
        )  # fmt: skip
    return dx


def dwconv_bwd_weight(
    dout: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    dilation: int = 1,
    relu: bool = False,
    programs: int | None = None,
) -> torch.Tensor:
    """dout, x: (N, H, W, C); weight: (C, 1, k, k) (for its shape) → dweight (C, 1, k, k).

    programs: partial rows per channel block (default: nhwc.reduce_grid sizes them)."""
    x, k = _check(x, weight, dilation)
    N, H, W, C = x.shape
    bp, bc = nhwc.blocks(C, _WGRAD_CFG[0])
    g, tiles = nhwc.reduce_grid(N * H * W, C, bp, bc, x.device, programs=programs)
    partial = torch.empty(g[0], C * k * k, device=x.device, dtype=torch.float32)
    with nhwc.device_guard(x):
        _dwconv_bwd_weight_kernel[g](
            dout.contiguous(), x, partial, N * H * W, H, W, C, tiles,
            KS=k, DIL=dilation, RELU=relu, T_PAD=triton.next_power_of_2(k * k),
            BLOCK_P=bp, BLOCK_C=bc, num_warps=_WGRAD_CFG[1],
        )  # fmt: skip
    return sum_rows(partial, dtype=weight.dtype).view(C, 1, k, k)
