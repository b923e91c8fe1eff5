"""The conv weight gradients of a whole cell, every fan-out group at once.

A weight gradient feeds nothing else in the backward, so the cell's backward
(fastadl/ops/cell/function.py) first walks its groups for the input and α gradients and then
computes the weights' from the operands each group left: one depthwise weight-gradient call per
branch kind and one batched GEMM per stage for the whole cell (its 20 edges), instead of one of
each per group. On the small maps of a search every such call costs 0.1-0.5 ms whatever its
size, so this takes most of the weight gradients' time away.

The operands of all groups are gathered edge-major in group order, which is the order of the
cell's stacked weights (fastadl/ops/cell/plan.py), so each kind's gradient comes out as one
stacked tensor. H^{l-2}'s group has one path where the others have P: its rows beyond the first
path are zero, which adds nothing to any sum.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastadl.ops.cell.cpu.dw_crop import dw_weight_grad_cropped
from fastadl.ops.cell.cpu.rows import pointwise_weight_grad_native
from fastadl.ops.cell.fanout import conv_inputs
from fastadl.ops.cell.plan import CellPlan


def _gather(parts, M: int) -> Tensor:
    """parts: per group (tensor (M_g, [rows,] E_g, C)), in group order → (M, [rows,] E_all, C):
    one concatenation along the edge axis, a group with fewer rows (H^{l-2}'s single path)
    padded with zero rows first."""
    full = [t if t.shape[0] == M else torch.cat([t, t.new_zeros(M - t.shape[0], *t.shape[1:])])
            for t in parts]  # fmt: skip
    return torch.cat(full, dim=-2)


# Why the GEMM below runs in double: a BatchNorm follows every 1×1 conv, so its upstream
# gradient gz sums to 0 over the positions and is orthogonal to the conv's output, and
# Σ_m gz[m]ᵀ d[m] is a small difference of large terms. A float GEMM's reduction over all M
# positions (P·N·H·W, thousands) made these gradients 1.6× further from float64 than the
# reference's conv backward, on average over every such tensor (issue 23, docs/TESTING.md).
# In double (float products are exact there) the sum is as good as the inputs; on the CPU it
# costs 1.3-1.6× a float GEMM at 2 channels and 3-4× at 64 (at F = 8 only the coarsest level's
# 64 channels take it). The C++ kernel (8, 16, 32 channels) sums float blocks into double
# instead (pointwise.cpp).
def _pointwise_weight_grads(gz: Tensor, d: Tensor) -> list[Tensor]:
    """gz, d: (M, R, E, C) → per row r the (E, C, C) gradients Σ_m gz[m, r, e]ᵀ d[m, r, e]."""
    M, R, E, C = gz.shape
    g = pointwise_weight_grad_native(gz, d)
    if g is None:
        g = torch.bmm(gz.reshape(M, R * E, C).permute(1, 2, 0).double(),
                      d.reshape(M, R * E, C).transpose(0, 1).double()).to(gz.dtype)  # fmt: skip
    return list(g.view(R, E, C, C).unbind(0))


# Up to this map size the groups' operands are gathered and each weight gradient is one call
# for the cell; on larger maps the calls cost what their arithmetic costs, and gathering would
# only add copies, so each group computes its own.
BATCH_MAX_PIXELS = 64


def weight_grads(edge, PN: int, H: int, W: int, re, D1, gz1, gd1, Y, D2, gz2, gd2) -> list[Tensor]:
    """The conv weight gradients of E edges (one group, or every group gathered), stacked per
    kind in the Function's kind order. re: (M, E, C) ReLU of each edge's input; the rest as
    fanout_backward's operands and fanout_forward's intermediates."""

    def as4(t: Tensor) -> Tensor:  # (M, E, C) → (P·N, E·C, H, W) channels-last
        return t.reshape(PN, H, W, -1).permute(0, 3, 1, 2)

    re4 = as4(re)
    grads = [
        dw_weight_grad_cropped(as4(gd1[:, j].contiguous()), re4, spec.kernel, spec.dilation)
        for j, spec in enumerate(edge.convs)
    ]
    grads += _pointwise_weight_grads(gz1, D1)
    if edge.S:
        grads += [
            dw_weight_grad_cropped(
                as4(gd2[:, s].contiguous()), as4(Y[:, s].contiguous()), spec.kernel, spec.dilation2
            )  # fmt: skip
            for s, spec in enumerate(edge.convs[: edge.S])
        ]
        grads += _pointwise_weight_grads(gz2, D2)
    return grads


def _relu_repeated(x: Tensor, E: int) -> Tensor:
    """(P·N, C, H, W) channels-last → (M, E, C): ReLU(x) once per edge."""
    C = x.shape[1]
    return torch.clamp_min(x.permute(0, 2, 3, 1).reshape(-1, 1, C).expand(-1, E, C), 0)


def cell_weight_grads(plan: CellPlan, P: int, shape, items) -> list[Tensor]:
    """The stacked conv weight gradients in the Function's kind order (plan.kinds of them).

    shape: (N, C, H, W) of one path; items: per group (x (P_g·N, C, H, W) channels-last, the
    forward's intermediates, the backward's operands from fanout_backward). The depthwise
    outputs and ReLU(x̂) the forward did not keep are rebuilt here (fanout.conv_inputs)."""
    N, C, H, W = shape
    edge = plan.edge
    keys = ("D1", "gz1", "gd1", "Y", "D2", "gz2", "gd2")
    if H * W > BATCH_MAX_PIXELS:
        per_group = []
        for (x, inter, ops), g in zip(items, plan.groups, strict=True):
            t = {**inter, **ops, **conv_inputs(x, inter, edge)}  # one group's at a time
            per_group.append(weight_grads(edge, x.shape[0], H, W, _relu_repeated(x, g.size),
                                          *(t[k] for k in keys)))  # fmt: skip
        return [torch.cat(parts) for parts in zip(*per_group, strict=True)]
    M = P * N * H * W
    tables = [{**inter, **ops, **conv_inputs(x, inter, edge)} for x, inter, ops in items]

    def gather(key: str) -> Tensor | None:
        parts = []
        for g, (x, _, _), table in zip(plan.groups, items, tables, strict=True):
            t = _relu_repeated(x, g.size) if key == "re" else table[key]
            if t is None:
                return None
            parts.append(t)
        return _gather(parts, M)

    return weight_grads(edge, P * N, H, W, gather("re"), *(gather(k) for k in keys))
