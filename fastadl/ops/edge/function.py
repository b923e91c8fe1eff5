"""The `fused` backend's autograd Function: one edge's forward and hand-written backward.

One call computes Σ_k w_k · op_k(x) for all ops of an edge and returns the output plus the
BatchNorm batch statistics (fastadl/ops/edge/fused.py updates the modules' running statistics from
them). At the coarse trellis levels an edge is ~100 tiny tensors, so the Python-level op count
matters as much as arithmetic: branches live in stacked buffers and each step is one call for
all of them (fastadl/ops/edge/aten.py has the conv, pool and layout helpers).

Buffers (M = N·H·W output positions, C channels; at stride 2 the output is H × W =
ceil(H_in/2) × ceil(W_in/2), and only x, ReLU(x) and dL/dx have the input's size):
- ``Am: (A, M, C)`` channels-last: the P pool outputs, then x itself when skip_connect is an op
  at stride 1 (a view of ``Ab``, their (A·N, C, H, W) channels-last concatenation);
- ``Z: (J + S + F, C, M)`` the pre-BN conv outputs (pointwise GEMM results), rows ordered
  [S separable first stages | J - S single-stage convs | S separable second stages | F], F = 1
  the factorized reduce (skip_connect at stride 2: two strided 1×1 convs of ReLU(x), the second
  on x shifted by one pixel, concatenated along C), so the J + F rows that feed the output
  ("finals") are one contiguous range ``Z[S:]``;
- ``Db: (J + S, N, H, W, C)`` the depthwise outputs (the pointwise GEMMs' inputs) per Z row;
- ``Ym: (S, M, C)`` ReLU(xhat) of the separable first stages (their second stages' input).
BatchNorm rows are normalised in place to xhat = (z - μ) ι, so the output is two GEMVs,
w_A · Am + w_F · Z[S:]. The backward (backward.py) is the one derived above
fastadl/ops/cell/fanout.py's ``fanout_backward``, with the means taken over the edge's M
positions.

``recompute=True`` saves only the inputs: backward reruns the forward to rebuild the
intermediates (an edge then keeps about one input-sized tensor instead of ~22; the reference
keeps ~29, tests/ops/test_recompute.py). Every saved intermediate is a base tensor, not a view:
torch.compile traces this Function whole and refuses saved views of intermediates.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fastadl.ops.edge import aten as fk
from fastadl.ops.edge.backward import edge_backward
from fastadl.ops.edge.plan import EdgePlan, index_tensors

CL = torch.channels_last
_SAVED = ("x_cl", "r", "inv", "Ab", "Z", "Db", "Ym", "pw")


def edge_forward(x, weights, rstats, params, plan: EdgePlan, eps: float, want_out: bool = True):
    """Forward of one edge without autograd. rstats: (2, n_bn, C) running mean/var, or None for
    batch statistics. Returns (out, batch [means; biased vars] (2·n_bn, C) or None,
    intermediates)."""
    N, C, H, W = fk.output_shape(x, plan.stride)
    M = N * H * W
    P, J, S, A, R, F = plan.P, plan.J, plan.S, plan.A, plan.R, plan.F
    dw1, pw1, dw2, pw2 = (
        params[:J],
        params[J : 2 * J],
        params[2 * J : 2 * J + S],
        params[2 * J + S : 2 * R],
    )
    idx_a, idx_f = index_tensors(plan, x.device)
    batch = rstats is None
    rmean, rvar = (None, None) if batch else rstats.unsqueeze(-1).unbind(0)  # (n_bn, C, 1)
    means, variances, invs = [], [], []

    def normalize_(z: Tensor, lo: int, hi: int, rows_first: bool = False) -> None:
        """z: (rows, C, L), or (rows, L, C) if rows_first, ← (z - μ) ι in place over L, for
        BN slots lo:hi. The statistics are kept as (rows, C, 1)."""
        d = 1 if rows_first else 2
        if batch:
            mean = z.mean(d, keepdim=True)
            z.sub_(mean)
            var = (z * z).mean(d, keepdim=True)  # two-pass: the variance of the centred values
            if rows_first:
                mean, var = mean.transpose(1, 2), var.transpose(1, 2)
            means.append(mean)
            variances.append(var)
            inv = (var + eps).rsqrt_()
        else:
            mean, var = rmean[lo:hi], rvar[lo:hi]
            inv = (var + eps).rsqrt_()
            if rows_first:
                mean = mean.transpose(1, 2)
            z.sub_(mean)
        invs.append(inv)
        z.mul_(inv.transpose(1, 2) if rows_first else inv)

    inter, out = {}, None
    if A:  # (A·N, C, H, W) channels-last: the pools, then x (skip_connect joins their GEMV)
        Ab, x_cl, inter["pool_idx"] = fk.pool_rows(x, plan.pool_kinds, bool(plan.skip), plan.stride)
        Am = Ab.permute(0, 2, 3, 1).reshape(A, M, C)
        if P:
            normalize_(Am[:P], 0, P, rows_first=True)
        if want_out:  # one GEMV: Σ_a w_a row_a
            out = torch.matmul(weights[idx_a], Am.view(A, -1)).view(N, H, W, C).permute(0, 3, 1, 2)
        inter["Ab"] = Ab
    else:
        x_cl = x.contiguous(memory_format=CL)
    inter["x_cl"] = x_cl

    if J or F:
        r = torch.relu(x_cl)
        pw_all = torch.stack(pw1 + pw2) if J else x.new_empty(0)  # (R, C, C, 1, 1); saved as is
        pw = pw_all.view(R, C, C)
        Db = x.new_empty(R, N, H, W, C)  # depthwise outputs, each row channels-last
        Dt = Db.view(R, M, C).transpose(1, 2)  # (R, C, M): the pointwise GEMMs' right operand
        Z = x.new_empty(R + F, C, M)
        st = plan.stride
        d1 = [fk.dw_forward(r, w, d, st) for w, d in zip(dw1, plan.dil1, strict=True)]
        if J:
            fk.stack_rows(d1, Db[:J])
            torch.bmm(pw[:J], Dt[:J], out=Z[:J])
            normalize_(Z[:J], P, P + J)
        Ym = x.new_empty(S, M, C)  # (positions, channels) rows
        if S:
            Ym = fk.relu_to(Z[:S].transpose(1, 2), Ym)
            ym = Ym.view(S, N, H, W, C).permute(0, 1, 4, 2, 3)
            d2 = [fk.dw_forward(y, w, d) for y, w, d in zip(ym, dw2, plan.dil2, strict=True)]
            fk.stack_rows(d2, Db[J:])
            torch.bmm(pw[J:], Dt[J:], out=Z[J:R])
            normalize_(Z[J:R], P + J, P + R)
        if F:
            fk.factorized_reduce(r, *params[2 * R :], Z[R])
            normalize_(Z[R:], P + R, P + R + F)
        if want_out:  # one GEMV: Σ_f w_f xhat_f over the final rows, laid out (C, N, H, W)
            t = torch.matmul(weights[idx_f], Z[S:].reshape(J + F, -1)).view(C, N, H, W)
            t = t.transpose(0, 1)  # NCHW output: the pools' part is channels-last
            out = t.contiguous() if out is None else torch.add(t, out, out=x.new_empty(t.shape))
        inter.update(r=r, Z=Z, Db=Db, Ym=Ym, pw=pw_all)

    if want_out and out is None:
        out = x.new_zeros(N, C, H, W)
    inter["inv"] = torch.cat(invs) if invs else x.new_empty(0, C, 1)  # (n_bn, C, 1)
    stats = torch.cat(means + variances).view(-1, C) if batch and means else None
    return out, stats, inter


class FusedMixedOpFunction(torch.autograd.Function):
    """apply(x, weights, rstats, plan, eps, recompute, *params) → (out, stats).

    params: the J first-stage depthwise weights, J pointwise weights, then the S second-stage
    depthwise and S pointwise weights (plan.convs order), then the factorized reduce's conv_1
    and conv_2 weights if plan.reduce. stats: the batch means then biased
    variances of the n_bn BNs, (2·n_bn, C); empty when rstats (running statistics) were used.
    """

    @staticmethod
    def forward(ctx, x, weights, rstats, plan, eps, recompute, *params):
        out, stats, inter = edge_forward(x, weights, rstats, params, plan, eps)
        ctx.plan, ctx.eps, ctx.recompute = plan, eps, recompute
        ctx.batch = rstats is None
        if recompute:
            ctx.save_for_backward(x, weights, rstats, *params)
        else:
            keep = [inter.get(k) for k in _SAVED] + inter.get("pool_idx", [])
            ctx.save_for_backward(x, weights, rstats, *params, *keep)
        stats = stats if stats is not None else x.new_empty(0)
        ctx.mark_non_differentiable(stats)
        return out, stats

    @staticmethod
    @once_differentiable  # the hand-written backward is not itself differentiable
    def backward(ctx, g, _gstats):
        plan = ctx.plan
        saved = ctx.saved_tensors
        x, weights, rstats = saved[:3]
        n_params = 2 * (plan.R + plan.F)
        params = saved[3 : 3 + n_params]
        if ctx.recompute:
            with torch.no_grad():
                _, _, inter = edge_forward(x, weights, rstats, params, plan, ctx.eps, False)
        else:
            rest = saved[3 + n_params :]
            inter = dict(zip(_SAVED, rest, strict=False))
            inter["pool_idx"] = list(rest[len(_SAVED) :])
        needs = ctx.needs_input_grad
        gx, gw, gparams = edge_backward(
            g, x, weights, params, plan, inter, ctx.batch, (needs[0], needs[1], needs[6:])
        )
        return (gx, gw, None, None, None, None, *gparams)
