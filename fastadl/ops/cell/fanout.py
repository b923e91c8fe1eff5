"""One fan-out group of a search cell: all E edges that read the same state, in one pass.

Plain tensor functions (no autograd, no modules); fastadl/ops/cell/function.py chains the
groups of a cell into one autograd node. Every edge of a group has the same EdgePlan
(fastadl/ops/edge/function.py); what they share is computed once:
- ReLU(x), the pools and their affine-free BatchNorms (batch statistics of the same input, or
  running statistics that the caller has checked are equal for every edge), and x (skip);
- each stage's depthwise convs of all E edges as one grouped conv per run of kinds
  (fastadl/ops/cell/conv_runs.py) over x repeated, and one pointwise GEMM per stage.

Layouts, all position-major (P paths stacked on the batch axis, Q = N·H·W positions per path,
M = P·Q, C channels, E edges), so a depthwise conv's channels-last output is already the next
GEMM's operand and the next BatchNorm's rows:
- x: (P·N, C, H, W) channels-last = (M, C): the state of every path at once;
- A: (A_rows, M, C): the pools' normalised outputs, then x itself when skip_connect is an op;
- D1, Z1: (M, J, E, C): first-stage depthwise / pointwise outputs, kinds in plan.convs order
  (the S separable ones first); Z1 is normalised in place to xhat;
- Y, D2, Z2: (M, S, E, C): ReLU(xhat) of the separable first stages, their second depthwise
  and pointwise outputs (Z2 normalised in place).
The output rows ("finals") are the J - S single-stage kinds Z1[:, S:] and the S second stages.
BatchNorm statistics are per (path, kind, edge, channel) over the Q positions of one path: a
stacked evaluation never pools statistics across paths, so each path sees what a separate
evaluation of the cell would.

The backward, with its derivation, is fanout_grad.py's ``fanout_backward``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fastadl.ops.cell.conv_runs import plan_runs, run_forward, run_input_grad
from fastadl.ops.cell.cpu.groups import group_forward, group_native_ok
from fastadl.ops.cell.cpu.pools import pool_rows_native, pools_native_ok
from fastadl.ops.cell.cpu.rows import (
    bn_forward_,
    mix_rows,
    pointwise_native,
)
from fastadl.ops.edge import aten as fk
from fastadl.ops.edge.plan import EdgePlan

# Below this many channels per edge MKL's batched GEMM is slow (K = N = 8 ran at ~1 GFLOP/s
# on the project's CPU), so each kind's E pointwise convs run as one block-diagonal GEMM: E
# times the arithmetic, but one well-shaped call (docs/PERFORMANCE.md).
BLOCK_DIAGONAL_BELOW = 16


def _as4(t: Tensor, PN: int, H: int, W: int) -> Tensor:
    """(M, ...) memory → the (P·N, K, H, W) channels-last tensor it is."""
    return t.view(PN, H, W, -1).permute(0, 3, 1, 2)


def _block_diagonal(pw: Tensor, transpose: bool) -> Tensor:
    """(R, E, C, C) per-edge matrices → (R, E·C, E·C) block-diagonal, each block W^T (the
    forward's right operand) or, with transpose=False, W itself (the input gradient's)."""
    R, E, C, _ = pw.shape
    bd = pw.new_zeros(R, E, C, E, C)
    bd.diagonal(dim1=1, dim2=3).copy_(
        pw.permute(0, 3, 2, 1) if transpose else pw.permute(0, 2, 3, 1)
    )
    return bd.view(R, E * C, E * C)


def _pointwise_rows(d: Tensor, pw: Tensor, out: Tensor, backward: bool) -> None:
    """out[:, r, e] = d[:, r, e] @ pw[r, e]^T, or @ pw[r, e] for the input gradient (backward)."""
    M, R, E, C = d.shape
    if pointwise_native(d, pw, out, transpose=backward):
        return
    if C < BLOCK_DIAGONAL_BELOW:
        bd = _block_diagonal(pw, transpose=not backward)
        for r in range(R):
            torch.mm(d[:, r].reshape(M, E * C), bd[r], out=out[:, r].view(M, E * C))
    else:
        w = pw.reshape(R * E, C, C)
        rows = d.reshape(M, R * E, C).transpose(0, 1)
        torch.bmm(
            rows, w if backward else w.transpose(1, 2), out=out.view(M, R * E, C).transpose(0, 1)
        )


def pointwise(d: Tensor, pw: Tensor, out: Tensor) -> None:
    """out[:, r, e] = d[:, r, e] @ pw[r, e]^T. d, out: (M, R, E, C); pw: (R, E, C, C) (out, in)."""
    _pointwise_rows(d, pw, out, backward=False)


def pointwise_input_grad(gz: Tensor, pw: Tensor) -> Tensor:
    """dL/d d of pointwise for dL/d out = gz (M, R, E, C) → (M, R, E, C)."""
    gd = gz.new_empty(gz.shape)
    _pointwise_rows(gz, pw, gd, backward=True)
    return gd


def _dw_stage(x: Tensor, wr: list[Tensor], runs, PN: int, H: int, W: int, shared: bool) -> Tensor:
    """One stage's depthwise convs → (M, n_kinds, E, C). x: when ``shared``, the (P·N, C, H, W)
    channels-last input that every kind and edge reads (each conv reads it repeated along
    channels, conv_runs.run_forward), else (M, n_kinds, E, C), one input per kind and edge;
    wr: each run's union kernel (conv_runs.run_weight)."""
    outs = []
    C = x.shape[1] if shared else x.shape[-1]
    for run, w in zip(runs, wr, strict=True):
        K = w.shape[0]  # run.size·E·C
        xin = x if shared else _as4(x[:, run.lo : run.hi].contiguous().view(-1, K), PN, H, W)
        d = run_forward(xin, w, run)
        outs.append(d.permute(0, 2, 3, 1).reshape(PN * H * W, run.size, -1, C))
    return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


def dw_stage_input_grad(gd: Tensor, wr: list[Tensor], runs, PN: int, H: int, W: int) -> Tensor:
    """dL/d input of _dw_stage, per kind: (M, n_kinds, E, C) from gd (M, n_kinds, E, C)."""
    outs, M = [], gd.shape[0]
    for run, w in zip(runs, wr, strict=True):
        g = gd if len(runs) == 1 else gd[:, run.lo : run.hi].contiguous()
        t = run_input_grad(_as4(g.view(M, -1), PN, H, W), w, run)
        outs.append(t.permute(0, 2, 3, 1).reshape(M, run.size, *gd.shape[-2:]))
    return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


@dataclass(frozen=True)
class GroupWeights:
    """A group's weights as its fan-out reads them (slices of the cell's stacked weights).

    wa: (A, E) mixing weights of the pool/skip rows; wf: (J, E) of the final rows (single-stage
    kinds, then second stages); wr1/wr2: the first and second stages' depthwise weights as
    each conv run's union kernel (conv_runs.run_weight), or None for a stage without convs;
    pw1: (J, E, C, C), pw2: (S, E, C, C) pointwise weights (out, in)."""

    wa: Tensor
    wf: Tensor
    wr1: list[Tensor] | None
    pw1: Tensor | None
    wr2: list[Tensor] | None
    pw2: Tensor | None


def stage_runs(plan: EdgePlan, H: int, W: int):
    """The conv runs of the first and second stages on an H×W map."""
    first = plan_runs(tuple((c.kernel, c.dilation) for c in plan.convs), H, W)
    second = plan_runs(tuple((c.kernel, c.dilation2) for c in plan.convs[: plan.S]), H, W)
    return first, second


def _normalize(z: Tensor, eps: float, running: tuple[Tensor, Tensor] | None):
    """z (P, Q, n, E, C) ← (z - μ) ι in place over Q. running: (mean, var) each (n, E, C)-
    broadcastable, or None for batch statistics. Returns (mean, biased var, ι), each
    (P, n, E, C) (batch) or (1, n, E, C) (running)."""
    if running is None:
        return bn_forward_(z, eps)
    n, E, C = z.shape[2:]
    mean, var = (t.view(1, n, -1, C).expand(1, n, E, C) for t in running)
    inv = (var + eps).rsqrt()
    z.sub_(mean.unsqueeze(1)).mul_(inv.unsqueeze(1))
    return mean, var, inv


def fanout_forward(
    x: Tensor,
    P: int,
    gw: GroupWeights,
    plan: EdgePlan,
    eps: float,
    rstats: tuple[Tensor, Tensor] | None = None,
    want_inter: bool = True,
    stats_out: tuple[Tensor, Tensor] | None = None,
):
    """The E edges reading state x. x: (P·N, C, H, W) channels-last; gw: the group's weights;
    rstats: None (batch statistics) or running (mean, var), each (n_pool + R·E, C): the pools'
    rows (equal for every edge) then the conv rows (r, e), first-stage kinds then second;
    stats_out: with batch statistics, (mean, biased var) buffers (P_cell, n_pool·E + R·E, C)
    that receive them: each pool's row repeated for every edge (each edge has its own BN
    module), a single path's broadcast to all P_cell (H^{l-2}'s group stands for P_cell
    evaluations of the reference).

    Returns out (M, E, C) (edge e's contribution at [:, e]) and the intermediates for backward.
    """
    PN, C, H, W = x.shape
    M, E = PN * H * W, gw.wa.shape[1]
    Q = M // P
    n_pool, J, S, A = plan.P, plan.J, plan.S, plan.A
    batch = rstats is None
    if batch and group_native_ok(x, plan):  # the whole group in one C++ call
        runs = stage_runs(plan, H, W) if J else None
        out, inter = group_forward(x, P, gw, plan, eps, runs, stats_out)
        return out, (inter if want_inter else None)
    stats, inter = [], {}  # stats: (mean, var) per BatchNorm'd block of rows, (P, n, E|1, C)
    out = x.new_empty(M, E, C)
    out4 = out.view(P, Q, E, C)
    written = False

    if A:  # pools, then x: each row shared by the E edges, weighted per edge
        native_pools = n_pool > 0 and pools_native_ok(x, plan.pool_kinds)
        pool_rows = pool_rows_native if native_pools else fk.pool_rows
        Ab, x_cl, pool_idx = pool_rows(x, plan.pool_kinds, bool(plan.skip))
        inter["native_pools"] = native_pools
        Am = Ab.permute(0, 2, 3, 1).reshape(A, M, C)
        rows = Am.view(A, P, Q, 1, C).permute(1, 2, 0, 3, 4)  # (P, Q, A, 1, C)
        if n_pool:
            run = None if batch else tuple(t[:n_pool].view(n_pool, 1, C) for t in rstats)
            mean, var, inv = _normalize(rows[:, :, :n_pool], eps, run)
            stats.append((mean, var))
            inter["inv_pool"] = inv  # (P|1, n_pool, 1, C)
        mix_rows(out4, rows.expand(P, Q, A, E, C), gw.wa, accumulate=False)
        written = True
        inter.update(Ab=Ab, pool_idx=pool_idx)
    else:
        x_cl = x.contiguous(memory_format=torch.channels_last)
    inter["x_cl"] = x_cl

    if J:
        runs1, runs2 = stage_runs(plan, H, W)

        def running(lo: int, n: int):  # rows lo..lo+n of the conv statistics, (n, E, C)
            if batch:
                return None
            return tuple(t[n_pool + lo * E : n_pool + (lo + n) * E].view(n, E, C) for t in rstats)

        re = torch.clamp_min(x_cl, 0)  # ReLU(x) once; every kind and edge reads it
        wr1 = gw.wr1
        D1 = _dw_stage(re, wr1, runs1, PN, H, W, shared=True)  # (M, J, E, C)
        Z1 = x.new_empty(M, J, E, C)
        pointwise(D1, gw.pw1, Z1)
        Z1v = Z1.view(P, Q, J, E, C)
        mean, var, inv1 = _normalize(Z1v, eps, running(0, J))
        stats.append((mean, var))
        Y = D2 = Z2 = inv2 = wr2 = None
        if S:
            Y = torch.clamp_min(Z1[:, :S], 0)  # (M, S, E, C), the second convs' input
            wr2 = gw.wr2
            D2 = _dw_stage(Y, wr2, runs2, PN, H, W, shared=False)
            Z2 = x.new_empty(M, S, E, C)
            pointwise(D2, gw.pw2, Z2)
            mean, var, inv2 = _normalize(Z2.view(P, Q, S, E, C), eps, running(J, S))
            stats.append((mean, var))
        # out[:, e] += Σ_f w[e, f] xhat_f[:, e] over the final rows
        n1 = J - S
        if n1:
            mix_rows(out4, Z1v[:, :, S:], gw.wf[:n1], accumulate=written)
            written = True
        if S:
            mix_rows(out4, Z2.view(P, Q, S, E, C), gw.wf[n1:], accumulate=written)
            written = True
        # D1, Y and D2 are not kept: only the conv weight gradients read them, and
        # conv_inputs rebuilds them from x and Z1 for those (half the saved bytes of a cell)
        inter.update(Z1=Z1, Z2=Z2, inv1=inv1, inv2=inv2, wr1=wr1, wr2=wr2)
    if not written:
        out.zero_()

    if batch and stats_out is not None:
        for i, buf in enumerate(stats_out):
            Pc, lo = buf.shape[0], 0
            for st in stats:  # (P, n, E|1, C) → rows (kind, edge), broadcast over edges/paths
                n = st[i].shape[1]
                buf[:, lo : lo + n * E].view(Pc, n, E, C).copy_(st[i])
                lo += n * E
    return out, (inter if want_inter else None)


def conv_inputs(x: Tensor, inter: dict, plan: EdgePlan) -> dict:
    """What fanout_forward computed but did not keep, rebuilt for the conv weight gradients
    from x (P·N, C, H, W) and its intermediates: D1 (M, J, E, C) the first-stage depthwise
    outputs, Y = ReLU(x̂) (M, S, E, C) of the separable first stages, D2 (M, S, E, C)."""
    PN, _, H, W = x.shape
    S = plan.S
    runs1, runs2 = stage_runs(plan, H, W)
    D1 = _dw_stage(torch.clamp_min(inter["x_cl"], 0), inter["wr1"], runs1, PN, H, W, shared=True)
    Y = D2 = None
    if S:
        Y = torch.clamp_min(inter["Z1"][:, :S], 0)
        D2 = _dw_stage(Y, inter["wr2"], runs2, PN, H, W, shared=False)
    return dict(D1=D1, Y=Y, D2=D2)
