"""The cell-level fast path's entry: run a SearchCell on P paths as one CellFunction call.

``fast_cell(cell, s0, s1s, weights, betas)`` returns Σ_p β_p · cell(s0, s1s[p], weights) computed
by fastadl/ops/cell/function.py, and updates the BatchNorm running statistics as the reference's
P sequential evaluations would; it returns None (the caller then runs the edges one by one)
when the cell is outside what the path covers: an edge whose backend is not fused/auto, ops
the fused plan does not know, edges that differ in structure, BatchNorms in mixed modes, or, in
eval mode, pool BatchNorms whose running statistics differ between edges reading one state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fastadl.ops.cell.function import CellFunction
from fastadl.ops.cell.plan import (
    batch_mode,
    cached_cell_plan,
    running_stats,
    stacked_stats,
    stacked_weights,
    update_running_stats,
)
from fastadl.ops.cell.small_work import threads_for
from fastadl.ops.cell.weights import bound_stacked_weights

CELL_BACKENDS = ("fused", "auto")  # edge backends whose cells take the cell-level path


def cell_path_enabled(cell: nn.Module) -> bool:
    return all(e.backend in CELL_BACKENDS for e in cell.edges)


def fast_cell(
    cell: nn.Module,
    s0: Tensor,
    s1s: Sequence[Tensor],
    weights: Tensor,
    betas: Tensor | None,
) -> Tensor | None:
    """s0, s1s[p]: (N, C, H, W); weights: (E, K) mixing weights (softmax(α)); betas: (P,) or None
    (one path, weight 1) → (N, B·C, H, W) channels-last, or None when not covered."""
    if not cell_path_enabled(cell) or s0.dim() != 4:
        return None
    if any(s.shape != s0.shape for s in s1s):
        raise ValueError(
            f"every H^(l-1) input must have H^(l-2)'s shape {tuple(s0.shape)}, "
            f"got {[tuple(s.shape) for s in s1s]}"
        )
    plan = cached_cell_plan(cell)
    if plan is None:
        return None
    batch = batch_mode(plan)
    if batch is None:
        return None
    N, C, H, W = s0.shape
    if batch and plan.bns and N * H * W <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {tuple(s0.shape)}"
        )
    # **decision** (as the fused edge): half/bfloat16 inputs (autocast) are computed in float32
    # (the hand-made BatchNorm sums need it) and the output is cast back to the input's dtype.
    dtype = s0.dtype if s0.dtype in (torch.float32, torch.float64) else torch.float32
    stats = stacked_stats(cell, plan)
    rstats = None
    if not batch:
        rstats = running_stats(plan, stats)
        if rstats is None:
            return None
        rstats = tuple(t.to(dtype) for t in rstats)
    # zero-copy leaves over the search optimizer's flat buffer where bound (weights.py)
    params = bound_stacked_weights(plan) or stacked_weights(plan)
    args = [s0, betas, weights, *s1s, *params]
    args = [a if a is None or a.dtype == dtype else a.to(dtype) for a in args]
    P = len(s1s)
    # meta tensors (the cost model counts on them) have no autocast to turn off
    no_autocast = (
        torch.autocast(s0.device.type, enabled=False)
        if torch.amp.is_autocast_available(s0.device.type)
        else contextlib.nullcontext()
    )
    with no_autocast, threads_for(s0.numel(), s0.device):
        out, means, variances = CellFunction.apply(
            plan, P, rstats, all(e.recompute for e in cell.edges), *args
        )
    if batch and plan.bns:
        update_running_stats(plan, stats, means, variances, N * H * W)
    return out if out.dtype == s0.dtype else out.to(s0.dtype)
