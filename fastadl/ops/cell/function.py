"""A whole search cell on P incoming paths as one autograd node with a hand-written backward.

    out = Σ_p β_p · concat_b(block_b(s0, s1_p))        (paper Eq. 6 for one trellis node)

s0 (H^{l-2}) is the same for every path, so its edges run once (on N images); s1_p and the
blocks run stacked along the batch axis (P·N images) with BatchNorm statistics per path
(fastadl/ops/cell/fanout.py). The groups run in state order; block b is complete once the group of
state b + 1 has run, and it is then the input of the group of state b + 2. The backward walks
the groups in reverse, accumulating each block's gradient before its group needs it.

Layouts: states and blocks are channels-last rows; ``acc: (P, Q, B, C)`` holds the blocks of
every path (Q = N·H·W), the output is (N, B·C, H, W) channels-last. With ``recompute`` only the
inputs are saved and the backward reruns the forward.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fastadl.ops.cell.conv_runs import run_weight
from fastadl.ops.cell.fanout import GroupWeights, fanout_forward, stage_runs
from fastadl.ops.cell.fanout_grad import fanout_backward
from fastadl.ops.cell.plan import CellPlan
from fastadl.ops.cell.saved_tree import pack, unpack
from fastadl.ops.cell.small_work import threads_for
from fastadl.ops.cell.wgrad import cell_weight_grads
from fastadl.ops.edge.plan import index_tensors

CL = torch.channels_last


def _kind_views(plan: CellPlan, stacked: tuple[Tensor, ...]) -> list[Tensor]:
    """The stacked weights as the fan-out groups read them: depthwise (E·C, 1, k, k) as they
    are, pointwise (E·C, C, 1, 1) as (E, C, C)."""
    n, C = plan.edges, plan.C
    return [w.view(n, C, C) if pw else w for w, pw in zip(stacked, plan.pointwise, strict=True)]


def _mixing(plan: CellPlan, weights: Tensor):
    """The cell's mixing weights as the groups read them: (rows, wa (A, E_all), wf (J, E_all)),
    edges in group order (α rows ``rows``)."""
    rows = plan.rows(weights.device)
    idx_a, idx_f = index_tensors(plan.edge, weights.device)
    w_all = weights.index_select(0, rows)
    return rows, w_all[:, idx_a].t(), w_all[:, idx_f].t()


def _union_kernels(plan: CellPlan, dws: list[Tensor], runs) -> list[list[Tensor]]:
    """Per group, each run's union kernel (conv_runs.run_weight), built once for all of the
    cell's edges and then cut per group: one call per run instead of one per run and group."""
    C, E_all = plan.C, plan.edges
    per_group = [[] for _ in plan.groups]
    for run in runs:
        u = run_weight(run, dws)  # (n·E_all·C, 1, kh, kw), kind-major
        by_kind = u.view(run.size, E_all * C, *u.shape[1:])
        for g, out in zip(plan.groups, per_group, strict=True):
            lo, hi = g.offset * C, (g.offset + g.size) * C
            out.append(u[lo:hi] if run.size == 1 else by_kind[:, lo:hi].reshape(-1, *u.shape[1:]))
    return per_group


def _group_weights(plan: CellPlan, stacked: list[Tensor], wa: Tensor, wf: Tensor, pws, hw):
    """Per group, its GroupWeights: slices of the cell's mixing and pointwise weights (pws:
    each stage's stacked pointwise weights, (J, E_all, C, C) and (S, E_all, C, C) or None) and
    the union kernels of its conv runs on an hw = (H, W) map."""
    J, S = plan.edge.J, plan.edge.S
    dw1, dw2 = stacked[:J], stacked[2 * J : 2 * J + S]
    runs1, runs2 = stage_runs(plan.edge, *hw)
    wr1 = _union_kernels(plan, dw1, runs1) if J else [None] * len(plan.groups)
    wr2 = _union_kernels(plan, dw2, runs2) if S else [None] * len(plan.groups)
    out = []
    for g in plan.groups:
        lo, hi = g.offset, g.offset + g.size
        out.append(GroupWeights(
            wa[:, lo:hi], wf[:, lo:hi], wr1[g.index],
            None if pws[0] is None else pws[0][:, lo:hi], wr2[g.index],
            None if pws[1] is None else pws[1][:, lo:hi],
        ))  # fmt: skip
    return out


def _prepare(plan: CellPlan, weights: Tensor, stacked: list[Tensor], hw: tuple[int, int]):
    """(α rows, per-group GroupWeights) for one evaluation of the cell on hw = (H, W) maps."""
    J, S = plan.edge.J, plan.edge.S
    rows, wa, wf = _mixing(plan, weights)
    pw1 = torch.stack(stacked[J : 2 * J]) if J else None
    pw2 = torch.stack(stacked[2 * J + S :]) if S else None
    return rows, _group_weights(plan, stacked, wa, wf, (pw1, pw2), hw)


def _group_rstats(plan: CellPlan, rstats, g, row: int):
    """This group's running (mean, var), each (n_pool + R·E, C), from the cell's rows."""
    if rstats is None:
        return None
    P, R, E = plan.edge.P, plan.edge.R, g.size
    out = []
    for t in rstats:
        part = t[row : row + (P + R) * E]
        pools = part[: P * E].view(P, E, plan.C)[:, 0]
        out.append(torch.cat([pools, part[P * E :]]))
    return tuple(out)


def _state(acc: Tensor, b: int, N: int, H: int, W: int) -> Tensor:
    """Block b of every path as a (P·N, C, H, W) channels-last tensor (one copy)."""
    P, Q, _, C = acc.shape
    return acc[:, :, b].contiguous().view(P * N, H, W, C).permute(0, 3, 1, 2)


def cell_forward(plan: CellPlan, P: int, x0, x1, weights, betas, stacked, rstats, want_inter):
    """x0: (N, C, H, W) channels-last; x1: (P·N, C, H, W) channels-last; weights (E_all, K);
    betas (P,) or None (= 1). Returns (out (N, B·C, H, W) channels-last, batch statistics
    (means, biased vars), each (P, n_bn, C) in plan.bns order, or None, saved intermediates)."""
    N, C, H, W = x0.shape
    B, Q = plan.blocks, N * H * W
    rows, gws = _prepare(plan, weights, stacked, (H, W))
    stats = None
    if rstats is None and plan.bns:
        stats = (x0.new_empty(P, len(plan.bns), C), x0.new_empty(P, len(plan.bns), C))
    inters = []
    acc = None  # (P, Q, B, C): every path's blocks, position-major
    row = 0
    for g in plan.groups:
        Pg = 1 if g.state == 0 else P
        x = x0 if g.state == 0 else x1 if g.state == 1 else _state(acc, g.state - 2, N, H, W)
        n_rows = (plan.edge.P + plan.edge.R) * g.size
        out, inter = fanout_forward(
            x, Pg, gws[g.index], plan.edge, plan.eps,
            _group_rstats(plan, rstats, g, row), want_inter,
            None if stats is None else tuple(t[:, row : row + n_rows] for t in stats),
        )  # fmt: skip
        inters.append((x, inter))
        row += n_rows
        if g.state == 0:
            out0 = out
        elif g.state == 1:
            acc = out.view(P, Q, B, C) + out0.view(1, Q, B, C)
        else:
            acc[:, :, g.first_block :] += out.view(P, Q, g.size, C)
    # out[q, b, c] = Σ_p β_p acc[p, q, b, c]: one GEMV, already in the channels-last layout
    y = acc[0] if betas is None else torch.mm(betas.view(1, P), acc.view(P, -1))
    out = y.reshape(N, H, W, B * C).permute(0, 3, 1, 2)
    # the group weights travel to the backward as tuples (pytree leaves are tensors there)
    return out, stats, (acc, inters, rows, [tuple(vars(gw).values()) for gw in gws])


def cell_backward(plan: CellPlan, P: int, g, x0, x1, weights, betas, batch, saved,
                  needs: tuple[bool, bool, bool, bool, bool]):  # fmt: skip
    """Gradients of cell_forward. needs: (x0, x1, weights, betas, params). Returns
    (g0 (N,C,H,W), g1 (P·N,C,H,W), gweights (E_all, K), gbetas (P,), stacked-param grads)."""
    need_x0, need_x1, need_w, need_b, need_p = needs
    N, C, H, W = x0.shape
    B, Q = plan.blocks, N * H * W
    acc, inters, rows, gws = saved
    gws = [GroupWeights(*t) for t in gws]
    gq = g.contiguous(memory_format=CL).permute(0, 2, 3, 1).reshape(1, Q, B, C)
    gbetas = None
    if betas is None:
        gacc = gq.clone()  # (1, Q, B, C), accumulated into below
    else:
        if need_b:
            # summed in double: a float GEMV's long dot products made β's gradient up to 5×
            # further from float64 than the reference's (issue 23)
            gbetas = (acc.view(P, -1) * gq.reshape(1, -1)).sum(1, dtype=torch.float64)
            gbetas = gbetas.to(acc.dtype)
        gacc = betas.view(P, 1, 1, 1) * gq  # (P, Q, B, C): each block's gradient per path
    mix_grads = [None] * len(plan.groups)  # per group (ga (A, E), gf (J, E))
    items = [None] * len(plan.groups)  # weight-gradient operands, per group
    # a block's gradient is needed for anything upstream of it, α included
    need_chain = need_x0 or need_x1 or need_p or need_w
    g0 = g1 = None
    for gi in range(len(plan.groups) - 1, -1, -1):
        grp = plan.groups[gi]
        x, inter = inters[gi]
        if grp.state == 0:
            Pg, need_x = 1, need_x0
            gout = gacc[:, :, grp.first_block :].sum(0)  # s0's edges serve every path
        else:
            Pg, need_x = P, need_x1 if grp.state == 1 else need_chain
            gout = gacc[:, :, grp.first_block :].contiguous()
        gx, mix_grads[gi], ops = fanout_backward(
            gout.view(Pg * Q, grp.size, C), x, Pg, gws[gi], plan.edge, inter, batch, need_x,
            need_w, need_p,
        )  # fmt: skip
        if need_p:
            items[gi] = (x, inter, ops)
        if grp.state == 0:
            g0 = gx
        elif grp.state == 1:
            g1 = gx
        elif gx is not None:
            gacc[:, :, grp.state - 2] += gx.view(P, Q, C)
    gweights = None
    if need_w:  # (A, E)/(J, E) per group → the (E_all, K) rows of α's softmax, in α's order
        idx_a, idx_f = index_tensors(plan.edge, weights.device)
        g_all = weights.new_zeros(plan.edges, weights.shape[1])
        if plan.edge.A:
            g_all[:, idx_a] = torch.cat([m[0] for m in mix_grads], 1).t()
        if plan.edge.J:
            g_all[:, idx_f] = torch.cat([m[1] for m in mix_grads], 1).t()
        gweights = torch.zeros_like(weights).index_copy_(0, rows, g_all)

    def as4(t: Tensor | None, n: int) -> Tensor | None:
        return None if t is None else t.view(n, H, W, C).permute(0, 3, 1, 2)

    gstacked = cell_weight_grads(plan, P, x0.shape, items) if need_p else None
    return as4(g0, N), as4(g1, P * N), gweights, gbetas, gstacked


class CellFunction(torch.autograd.Function):
    """apply(plan, P, rstats, recompute, s0, betas, weights, *s1 (P of them), *stacked) →
    (out, means, variances). stacked: plan.stacked_weights (one tensor per weight kind);
    betas may be None (a single path of weight 1); rstats: running (mean, var) for eval mode.
    means/variances: batch statistics (P, n_bn, C) for the running-stat update (empty in eval).
    """

    @staticmethod
    def forward(ctx, plan, P, rstats, recompute, s0, betas, weights, *rest):
        s1s, params = rest[:P], rest[P:]
        x0 = s0.contiguous(memory_format=CL)
        x1 = (torch.cat(s1s) if P > 1 else s1s[0]).contiguous(memory_format=CL)
        stacked = _kind_views(plan, params)
        out, stats, saved = cell_forward(
            plan, P, x0, x1, weights, betas, stacked, rstats, not recompute
        )
        ctx.plan, ctx.P, ctx.rstats, ctx.recompute = plan, P, rstats, recompute
        ctx.work = (x0.numel(), x0.device)  # the backward's thread rule (small_work.py)
        ctx.shapes = [p.shape for p in params]  # the stacked weights' own shapes
        # every intermediate goes through save_for_backward, so saved-tensor hooks (memory
        # accounting, CPU offloading) see all of it
        tensors: list[Tensor] = []
        ctx.spec = None if recompute else pack(saved, tensors)
        ctx.n_stacked = len(stacked)
        ctx.save_for_backward(x0, x1, weights, betas, *stacked, *tensors)
        empty = x0.new_empty(0)
        means, variances = stats if stats is not None else (empty, empty)
        ctx.mark_non_differentiable(means, variances)
        return out, means, variances

    @staticmethod
    @once_differentiable  # the hand-written backward is not itself differentiable
    def backward(ctx, g, _gm, _gv):
        with threads_for(*ctx.work):
            return CellFunction._backward(ctx, g)

    @staticmethod
    def _backward(ctx, g):
        plan, P = ctx.plan, ctx.P
        x0, x1, weights, betas, *rest = ctx.saved_tensors
        stacked, tensors = rest[: ctx.n_stacked], rest[ctx.n_stacked :]
        if ctx.recompute:
            with torch.no_grad():
                _, _, saved = cell_forward(
                    plan, P, x0, x1, weights, betas, stacked, ctx.rstats, True
                )
        else:
            saved = unpack(ctx.spec, iter(tensors))
        nig = ctx.needs_input_grad
        need_p = any(nig[7 + P :])
        needs = (nig[4], any(nig[7 : 7 + P]), nig[6], nig[5], need_p)
        batch = ctx.rstats is None
        g0, g1, gw, gb, gst = cell_backward(plan, P, g, x0, x1, weights, betas, batch,
                                            saved, needs)  # fmt: skip
        g1s = [None] * P if g1 is None else list(g1.split(x0.shape[0]))
        gparams = [None] * len(ctx.shapes)
        if gst is not None:
            gparams = [v.reshape(shape) for v, shape in zip(gst, ctx.shapes, strict=True)]
        return (None, None, None, None, g0, gb, gw, *g1s, *gparams)
