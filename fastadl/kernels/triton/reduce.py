"""Second stage of every deterministic reduction here: column sums of per-block partials.

The kernels that need a reduction over all pixels (weight grads, dα, BatchNorm sums) never use
atomics: each program writes its own row of a (R, M) partial buffer, and ``sum_rows`` adds the rows
in a fixed order. Same shapes → same blocks → same order → bitwise-equal results run to run.
No races: a partial slot has one writer, and sum_rows is a later launch on the same stream, so
it starts only after every program of the first stage has written its row.

Bytes per call: reads R·M·4 (fp32 partials), writes M·4.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .nhwc import check_launchable, device_guard

# Rows per loop step × columns per program: a [BLOCK_R, BLOCK_M] fp32 accumulator of ≤ 4,096
# elements. Columns are few (K ≤ 8, or C·taps ≤ 64·68), so programs walk the rows.
_BLOCK_R = 32
_MAX_BLOCK_M = 128


@triton.jit
def _sum_rows_kernel(
    part_ptr,  # (R, M) fp32 per-block partial sums, unit column stride
    out_ptr,  # (M,) column sums
    R,
    M,
    stride_r,  # elements between rows of part
    BLOCK_R: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    cols = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = cols < M
    acc = tl.zeros([BLOCK_R, BLOCK_M], dtype=tl.float32)
    for r0 in range(0, R, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        mask = (rows < R)[:, None] & mask_m[None, :]
        acc += tl.load(part_ptr + rows[:, None] * stride_r + cols[None, :], mask=mask, other=0.0)
    tl.store(out_ptr + cols, tl.sum(acc, axis=0), mask=mask_m)


def sum_rows(
    partials: torch.Tensor, dtype: torch.dtype | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """partials: (R, M) fp32 with unit column stride (a column slice of a wider buffer is fine)
    → (M,) column sums (in ``dtype``, default fp32), written into ``out`` (contiguous) if given."""
    check_launchable(partials)
    if partials.stride(1) != 1:
        partials = partials.contiguous()
    R, M = partials.shape
    if out is None:
        out = torch.empty(M, device=partials.device, dtype=dtype or torch.float32)
    block_m = min(triton.next_power_of_2(M), _MAX_BLOCK_M)
    with device_guard(partials):
        _sum_rows_kernel[(triton.cdiv(M, block_m),)](
            partials, out, R, M, partials.stride(0), BLOCK_R=_BLOCK_R, BLOCK_M=block_m
        )
    return out
