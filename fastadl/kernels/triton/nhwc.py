"""Channels-last (NHWC) tiling shared by the spatial kernels: dwconv, edge_dwconv and pool.

Layout decision: the spatial kernels work on channels-last memory, i.e. a (N, C, H, W) tensor
whose strides are those of a contiguous (N, H, W, C) one. Why this is the faster choice on GPU
for Auto-DeepLab's edges (C = F·s/4 = 8…64 channels, odd maps 81², 41², 21², 11² at batch 2):
- a program owns a [BLOCK_P, BLOCK_C] tile of (pixels of the flattened N·H·W axis) × channels.
  Flattening N·H·W keeps every tile full whatever W is; NCHW row tiles would leave most lanes idle
  on an 11- or 21-wide row, and NCHW plane tiles give one tiny program per (n, c) plane.
- the C channels of a pixel are contiguous, so a tile (and each shifted tap of it) is one
  coalesced block of memory; with BLOCK_C = C the whole tile is a single contiguous span.
- a depthwise filter tap is one (BLOCK_C,) vector load per program, broadcast over BLOCK_P pixels.
- every per-channel reduction the layer needs (depthwise weight grads, BatchNorm sums) is a sum
  over the pixel axis of a register tile, kept per channel without any transpose.
- the 1×1 pointwise conv that follows each depthwise conv is a plain (N·H·W, C) @ (C, C) GEMM on
  channels-last memory, without a transpose.
Programs own disjoint tiles, so every output element has exactly one writer: the forward and
input-gradient kernels gather (each output pixel reads its neighbours) and never scatter.

The cost is one layout change of an edge's input when the caller hands it over in NCHW; the
op layer (fastadl/ops/triton/backend.py) does that once per edge for all branches.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl
from triton import knobs

# Tile sizes: every kernel fully unrolls its taps, and the compiler hoists their loads (good:
# many loads in flight per thread), so registers grow with taps × elements per thread. Each
# launcher's (tile elements, num_warps) comes from a ptxas survey at sm_90: the largest tile
# that compiles without spills at C = 8 and C = 64, where tile size mattered; a few hundred
# elements per program otherwise. tests/kernels/triton/test_kernels_compile_sm90.py keeps them
# spill-free.

# Channel-block cap: 64 fp32 = 256 B per pixel, two 128 B lines; Auto-DeepLab's C is at most 64.
MAX_BLOCK_C = 64
# Weight-gradient grids (reduce_grid). Each program sums its pixels in registers and writes one
# partial row of taps × C. A program gets at least MIN_PIXELS_PER_PROG pixels, so its partial
# row stays a small share of what it reads: 25 taps against 2 × 64 pixel reads for a 5×5 dwconv
# (≈ 20 %), 68 taps against 5 × 64 for the fused edge (≈ 21 %). Above that floor the grid is sized
# to fill the device: PROGRAMS_PER_SM programs per SM over all channel blocks (and weight sets),
# so a coarse 2×64×11×11 level still spreads over the GPU instead of one program per channel
# block walking every tile.
MIN_PIXELS_PER_PROG = 64
PROGRAMS_PER_SM = 2
# Without CUDA (the interpreter) the grid is sized as for a GPU of this many SMs: small enough
# to keep the interpreted tests quick, large enough that their reductions run several programs.
INTERPRETER_SMS = 4


@triton.jit
def tile_coords(tile, P, H, W, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """Pixel tile ``tile`` × this program's channel block: element offsets (int64), the pixels'
    h and w, the pixel mask, and the channel offsets and mask."""
    offs_p = tile * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = offs_p % (H * W)
    center = offs_p.to(tl.int64)[:, None] * C + offs_c[None, :]
    return center, hw // W, hw % W, offs_p < P, offs_c, offs_c < C


@triton.jit
def shifted(center, h, w, mask_p, mask_c, H, W, C, DH: tl.constexpr, DW: tl.constexpr):
    """Element offsets and mask of the tile moved by (DH, DW) pixels within each image.

    Pixels whose (h + DH, w + DW) leaves the image are masked: loaded with other=0 this is the
    convolution's zero padding, and it never crosses into a neighbouring row or image. The shift
    is one scalar added to the tile's offsets, so a tap costs one add and a mask per element.
    """
    valid = mask_p & (h + DH >= 0) & (h + DH < H) & (w + DW >= 0) & (w + DW < W)
    return center + (DH * W + DW) * C, valid[:, None] & mask_c[None, :]


def blocks(C: int, tile_elems: int) -> tuple[int, int]:
    """(BLOCK_P, BLOCK_C) for C channels: all channels in one block up to MAX_BLOCK_C."""
    block_c = min(triton.next_power_of_2(C), MAX_BLOCK_C)
    return max(tile_elems // block_c, 1), block_c


def grid(P: int, C: int, block_p: int, block_c: int) -> tuple[int, int]:
    """Launch grid over (pixel tiles, channel blocks): one tile per program."""
    return triton.cdiv(P, block_p), triton.cdiv(C, block_c)


@functools.cache
def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return INTERPRETER_SMS
    return torch.cuda.get_device_properties(device).multi_processor_count


def reduce_grid(
    P: int,
    C: int,
    block_p: int,
    block_c: int,
    device: torch.device,
    sets: int = 1,
    programs: int | None = None,
) -> tuple[tuple[int, ...], int]:
    """(grid, tiles per program) for the weight-gradient kernels.

    grid = (rows, channel blocks) or, with sets > 1, (rows, channel blocks, sets): each of the
    rows programs of a channel block (and weight set) walks ``tiles`` consecutive pixel tiles
    and writes one partial row. programs: the rows wanted (tests force several, with tails);
    by default sized from the work and the device's SM count (see MIN_PIXELS_PER_PROG).
    """
    n_tiles = triton.cdiv(P, block_p)
    c_blocks = triton.cdiv(C, block_c)
    if programs is None:
        programs = triton.cdiv(PROGRAMS_PER_SM * _sm_count(device), c_blocks * sets)
        programs = min(programs, triton.cdiv(P, MIN_PIXELS_PER_PROG))
    tiles = triton.cdiv(n_tiles, max(1, min(programs, n_tiles)))
    rows = triton.cdiv(n_tiles, tiles)
    return ((rows, c_blocks) if sets == 1 else (rows, c_blocks, sets)), tiles


def device_guard(t: torch.Tensor):
    """Context that makes t's CUDA device current: Triton launches on the current device and
    stream, so a launch for tensors on cuda:1 from a process whose current device is cuda:0
    would run on the wrong GPU. Every launcher wraps its launches in it."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def check_launchable(*tensors: torch.Tensor) -> None:
    """Raise a clear error instead of a driver failure when a kernel cannot run on these tensors."""
    for t in tensors:
        if t.device.type != "cuda" and not knobs.runtime.interpret:
            raise RuntimeError(
                f"Triton kernels need CUDA tensors (got a {t.device.type} tensor); on CPU set "
                "TRITON_INTERPRET=1 before fastadl.kernels.triton is imported"
            )


def check_nhwc(x: torch.Tensor) -> torch.Tensor:
    """x as a contiguous (N, H, W, C) tensor (a view when it already is one)."""
    if x.dim() != 4:
        raise ValueError(f"expected a (N, H, W, C) tensor, got shape {tuple(x.shape)}")
    check_launchable(x)
    return x.contiguous()
