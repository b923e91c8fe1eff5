"""One fan-out group of a search cell: all E edges that read the same state, in one pass.

Plain tensor functions (no autograd, no modules); fastadl/ops/cell_function.py chains the
groups of a cell into one autograd node. Every edge of a group has the same EdgePlan
(fastadl/ops/fused_function.py); what they share is computed once:
- ReLU(x), the pools and their affine-free BatchNorms (batch statistics of the same input, or
  running statistics that the caller has checked are equal for every edge), and x (skip);
- each stage's depthwise convs of all E edges as one grouped conv per run of kinds
  (fastadl/ops/conv_runs.py) over x repeated, and one pointwise GEMM per stage.

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

Backward of a final row with weight w (g = dL/d out of its edge, means over one path's Q):
    dL/dz = w ι (g - mean(g) - xhat mean(g·xhat)),    dL/dw = Σ g·xhat
(with running statistics, dL/dz = w ι g); a sep first stage is the same with w = 1 and g the
gradient at its ReLU, where Σ g·xhat = Σ g·ReLU(xhat) because g is 0 wherever ReLU clipped.
The conv weights' gradients are not computed here: fanout_backward returns their operands and
the cell computes them for all its groups at once (fastadl/ops/cell_wgrad.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fastadl.ops import fused_kernels as fk
from fastadl.ops.conv_runs import plan_runs, run_forward, run_input_grad
from fastadl.ops.fused_function import EdgePlan

# Below this many channels per edge MKL's batched GEMM is slow (K = N = 8 ran at ~1 GFLOP/s
# on the project's CPU), so each kind's E pointwise convs run as one block-diagonal GEMM: E
# times the arithmetic, but one well-shaped call (docs/PERFORMANCE.md).
BLOCK_DIAGONAL_BELOW = 16


def _as4(t: Tensor, PN: int, H: int, W: int) -> Tensor:
    """(M, ...) memory → the (P·N, K, H, W) channels-last tensor it is."""
    return t.view(PN, H, W, -1).permute(0, 3, 1, 2)


def _normalize_(z: Tensor, dim: int, eps: float, running: tuple[Tensor, Tensor] | None):
    """z ← (z - μ) ι in place, statistics over ``dim``. running: (mean, var) broadcastable
    against z, or None for batch statistics. Returns (mean, biased var, ι)."""
    if running is None:  # two-pass: the variance of the centred values (torch.var_mean is
        mean = z.mean(dim, keepdim=True)  # 20-50x slower on these shapes)
        z.sub_(mean)
        var = (z * z).mean(dim, keepdim=True)
    else:
        mean, var = running
        z.sub_(mean)
    inv = (var + eps).rsqrt_()
    z.mul_(inv)
    return mean, var, inv


def _block_diagonal(pw: Tensor, transpose: bool) -> Tensor:
    """(R, E, C, C) per-edge matrices → (R, E·C, E·C) block-diagonal, each block W^T (the
    forward's right operand) or, with transpose=False, W itself (the input gradient's)."""
    R, E, C, _ = pw.shape
    bd = pw.new_zeros(R, E, C, E, C)
    bd.diagonal(dim1=1, dim2=3).copy_(
        pw.permute(0, 3, 2, 1) if transpose else pw.permute(0, 2, 3, 1)
    )
    return bd.view(R, E * C, E * C)


def pointwise(d: Tensor, pw: Tensor, out: Tensor) -> None:
    """out[:, r, e] = d[:, r, e] @ pw[r, e]^T. d, out: (M, R, E, C); pw: (R, E, C, C) (out, in)."""
    M, R, E, C = d.shape
    if C < BLOCK_DIAGONAL_BELOW:
        bd = _block_diagonal(pw, transpose=True)
        for r in range(R):
            torch.mm(d[:, r].reshape(M, E * C), bd[r], out=out[:, r].view(M, E * C))
    else:
        rows = d.view(M, R * E, C).transpose(0, 1)
        torch.bmm(
            rows, pw.reshape(R * E, C, C).transpose(1, 2), out=out.view(M, R * E, C).transpose(0, 1)
        )


def pointwise_input_grad(gz: Tensor, pw: Tensor) -> Tensor:
    """dL/d d of pointwise for dL/d out = gz (M, R, E, C) → (M, R, E, C)."""
    M, R, E, C = gz.shape
    gd = gz.new_empty(M, R, E, C)
    if C < BLOCK_DIAGONAL_BELOW:
        bd = _block_diagonal(pw, transpose=False)
        for r in range(R):
            torch.mm(gz[:, r].reshape(M, E * C), bd[r], out=gd[:, r].view(M, E * C))
    else:
        rows = gz.reshape(M, R * E, C).transpose(0, 1)
        torch.bmm(rows, pw.reshape(R * E, C, C), out=gd.view(M, R * E, C).transpose(0, 1))
    return gd


def _dw_stage(x: Tensor, wr: list[Tensor], runs, PN: int, H: int, W: int, shared: bool) -> Tensor:
    """One stage's depthwise convs → (M, n_kinds, E, C). x: (M, E, C) when ``shared`` (the same
    input, ReLU(state) repeated, for every kind) else (M, n_kinds, E, C), one input per kind;
    wr: each run's union kernel (conv_runs.run_weight)."""
    outs, M = [], x.shape[0]
    for run, w in zip(runs, wr, strict=True):
        if shared:
            xin = x if run.size == 1 else x.unsqueeze(1).expand(M, run.size, *x.shape[1:])
        else:
            xin = x[:, run.lo : run.hi]
        xin = xin.contiguous().view(M, -1)
        d = run_forward(_as4(xin, PN, H, W), w, run)
        outs.append(d.permute(0, 2, 3, 1).reshape(M, run.size, *x.shape[-2:]))
    return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


def _dw_stage_input_grad(gd: Tensor, wr: list[Tensor], runs, PN: int, H: int, W: int) -> Tensor:
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
    means, variances, inter = [], [], {}
    out = None

    if A:  # pools, then x: each row shared by the E edges, weighted per edge
        Ab, x_cl, pool_idx = fk.pool_rows(x, plan.pool_kinds, bool(plan.skip))
        Am = Ab.permute(0, 2, 3, 1).reshape(A, M, C)
        if n_pool:
            run = None if batch else tuple(t[:n_pool].view(n_pool, 1, 1, C) for t in rstats)
            mean, var, inv = _normalize_(Am[:n_pool].view(n_pool, P, Q, C), 2, eps, run)
            means.append(mean)  # (n_pool, P, 1, C)
            variances.append(var)
            inter["inv_pool"] = inv
        out = Am[0].view(M, 1, C) * gw.wa[0].view(1, E, 1)
        for a in range(1, A):
            out.addcmul_(Am[a].view(M, 1, C), gw.wa[a].view(1, E, 1))
        inter.update(Ab=Ab, pool_idx=pool_idx)
    else:
        x_cl = x.contiguous(memory_format=torch.channels_last)
    inter["x_cl"] = x_cl

    if J:
        runs1, runs2 = stage_runs(plan, H, W)

        def running(lo: int, n: int):  # rows lo..lo+n·E of the conv statistics, flattened
            if batch:
                return None
            return tuple(t[n_pool + lo * E : n_pool + (lo + n) * E].reshape(-1) for t in rstats)

        re = torch.clamp_min(x_cl.permute(0, 2, 3, 1).reshape(M, 1, C).expand(M, E, C), 0)
        wr1 = gw.wr1
        D1 = _dw_stage(re, wr1, runs1, PN, H, W, shared=True)  # (M, J, E, C)
        Z1 = x.new_empty(M, J, E, C)
        pointwise(D1, gw.pw1, Z1)
        mean, var, inv1 = _normalize_(Z1.view(P, Q, -1), 1, eps, running(0, J))
        means.append(mean)  # (P, 1, J·E·C)
        variances.append(var)
        Y = D2 = Z2 = inv2 = wr2 = None
        if S:
            Y = torch.clamp_min(Z1[:, :S], 0)  # (M, S, E, C), the second convs' input
            wr2 = gw.wr2
            D2 = _dw_stage(Y, wr2, runs2, PN, H, W, shared=False)
            Z2 = x.new_empty(M, S, E, C)
            pointwise(D2, gw.pw2, Z2)
            mean, var, inv2 = _normalize_(Z2.view(P, Q, -1), 1, eps, running(J, S))
            means.append(mean)
            variances.append(var)
        # out[:, e] += Σ_f w[e, f] xhat_f[:, e] over the final rows
        for f in range(J):
            xf = Z1[:, S + f] if f < J - S else Z2[:, f - (J - S)]
            if out is None:
                out = xf * gw.wf[f].view(1, E, 1)
            else:
                out.addcmul_(xf, gw.wf[f].view(1, E, 1))
        inter.update(D1=D1, Z1=Z1, Y=Y, D2=D2, Z2=Z2, inv1=inv1, inv2=inv2, wr1=wr1, wr2=wr2)
    if out is None:
        out = x.new_zeros(M, E, C)

    if batch and stats_out is not None:
        for buf, ts in zip(stats_out, (means, variances), strict=True):
            Pc = buf.shape[0]
            if n_pool:  # (n_pool, P, 1, C) → rows (pool, edge)
                buf[:, : n_pool * E].view(Pc, n_pool, E, C).copy_(ts[0].transpose(0, 1))
            lo = n_pool * E
            for t in ts[bool(n_pool) :]:  # (P, 1, rows·E·C) → rows (kind, edge)
                n = t.shape[-1] // C
                buf[:, lo : lo + n].view(Pc, 1, n * C).copy_(t)
                lo += n
    return out, (inter if want_inter else None)


def fanout_backward(
    g: Tensor,
    x: Tensor,
    P: int,
    gw: GroupWeights,
    plan: EdgePlan,
    inter: dict,
    batch: bool,
    need_x: bool,
    need_w: bool,
    need_params: bool,
):
    """Gradients of fanout_forward for dL/d out = g (M, E, C). Returns (gx (M, C) or None,
    the mixing weights' gradients (ga (A, E), gf (J, E)) or None, the conv weight gradients'
    operands or None): a dict with gz1, gd1 (M, J, E, C) and gz2, gd2 (M, S, E, C), the
    gradients at each stage's pointwise and depthwise outputs (fastadl/ops/cell_wgrad.py turns
    them into weight gradients)."""
    PN, C, H, W = x.shape
    M, E = g.shape[0], g.shape[1]
    Q = M // P
    n_pool, J, S, A = plan.P, plan.J, plan.S, plan.A
    need_chain = need_x or need_params
    ga = gf = None
    gx = None  # (M, C)
    x_cl = inter["x_cl"]
    g5 = g.view(P, Q, E, C)

    if A:
        Am = inter["Ab"].permute(0, 2, 3, 1).reshape(A, M, C)
        if need_w:  # Σ_{m,c} g[m, e, c] A[a, m, c]
            ga = (g.unsqueeze(0) * Am.unsqueeze(2)).sum((1, 3))  # (A, E)
        if need_x:
            gA = (g.unsqueeze(0) * gw.wa.view(A, 1, E, 1)).sum(2)  # (A, M, C)
            if plan.skip:
                gx = gA[n_pool]
            if n_pool:
                gp = gA[:n_pool].view(n_pool, P, Q, C)  # in place below
                if batch:
                    xh = Am[:n_pool].view(n_pool, P, Q, C)
                    gxh = (gp * xh).mean(2, keepdim=True)
                    gp.sub_(gp.mean(2, keepdim=True)).sub_(xh * gxh)
                gp.mul_(inter["inv_pool"])
                maxes = iter(inter["pool_idx"])
                gps = gA[:n_pool].view(n_pool, PN, H, W, C).permute(0, 1, 4, 2, 3)
                for kind, gk in zip(plan.pool_kinds, gps, strict=True):
                    if kind == "max":
                        t = fk.max_pool_grad(gk, x_cl, next(maxes))
                    else:
                        t = fk.avg_pool_grad(gk, x_cl)
                    t = t.permute(0, 2, 3, 1).reshape(M, C)
                    gx = t if gx is None else gx + t

    ops = None
    if J:
        runs1, runs2 = stage_runs(plan, H, W)
        Z1, Y, Z2 = inter["Z1"], inter["Y"], inter["Z2"]
        n1 = J - S
        wf = gw.wf  # (J, E)
        gq = g5.unsqueeze(2)  # (P, Q, 1, E, C)
        Z1v = Z1.view(P, Q, J, E, C)
        gxh1 = (Z1v[:, :, S:] * gq).sum(1, keepdim=True)  # (P, 1, n1, E, C): Σ_Q g·xhat
        gxh2 = (Z2.view(P, Q, S, E, C) * gq).sum(1, keepdim=True) if S else None
        if need_w:
            parts = ([gxh1.sum((0, 1, 4))] if n1 else []) + ([gxh2.sum((0, 1, 4))] if S else [])
            gf = torch.cat(parts) if len(parts) > 1 else parts[0]  # (J, E)
        if not need_chain:
            return None, (ga, gf) if need_w else None, None
        # dL/dz of the final rows: w ι (g - mean g - xhat mean(g·xhat)); ι: (P|1, 1, rows, E, C)
        gc = gq - g5.mean(1, keepdim=True).unsqueeze(2) if batch else gq
        inv1 = inter["inv1"].view(-1, 1, J, E, C)
        gz1 = x.new_empty(M, J, E, C)
        gz1v = gz1.view(P, Q, J, E, C)
        if n1:
            a1 = wf[:n1].view(1, 1, n1, E, 1) * inv1[:, :, S:]
            torch.mul(gc, a1, out=gz1v[:, :, S:])
            if batch:
                gz1v[:, :, S:].addcmul_(Z1v[:, :, S:], a1 * gxh1, value=-1.0 / Q)
        gz2 = gd2 = None
        if S:
            a2 = wf[n1:].view(1, 1, S, E, 1) * inter["inv2"].view(-1, 1, S, E, C)
            gz2 = torch.mul(gc, a2, out=x.new_empty(P, Q, S, E, C))
            if batch:
                gz2.addcmul_(Z2.view(P, Q, S, E, C), a2 * gxh2, value=-1.0 / Q)
            gz2 = gz2.view(M, S, E, C)
            gd2 = pointwise_input_grad(gz2, gw.pw2)
            gy = _dw_stage_input_grad(gd2, inter["wr2"], runs2, PN, H, W)  # (M, S, E, C)
            gy = fk.relu_grad_to(gy, Y, gy).view(P, Q, S, E, C)
            i1 = inv1[:, :, :S]  # BN of the sep first stages, upstream gradient gy
            if batch:
                b2 = (gy * Y.view(P, Q, S, E, C)).mean(1, keepdim=True)
                torch.mul(gy - gy.mean(1, keepdim=True), i1, out=gz1v[:, :, :S])
                gz1v[:, :, :S].addcmul_(Z1v[:, :, :S], i1 * b2, value=-1.0)
            else:
                torch.mul(gy, i1, out=gz1v[:, :, :S])
        gd1 = pointwise_input_grad(gz1, gw.pw1)  # (M, J, E, C)
        if need_x:
            gr = _dw_stage_input_grad(gd1, inter["wr1"], runs1, PN, H, W)  # per kind and edge
            gsum = gr.view(M, -1, C).sum(1)  # (M, C): the repeated ReLU(x) is one tensor
            gsum = fk.relu_grad_to(gsum, x_cl.permute(0, 2, 3, 1).reshape(M, C), gsum)
            gx = gsum if gx is None else gx.add_(gsum)
        if need_params:
            ops = dict(gz1=gz1, gd1=gd1, gz2=gz2, gd2=gd2)

    if need_x and gx is None:
        gx = x.new_zeros(M, C)
    return gx, ((ga, gf) if need_w else None), ops
