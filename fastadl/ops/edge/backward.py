"""The `fused` backend's hand-written backward of one edge (function.py's buffers).

The derivation of a BatchNorm'd row's gradients is written once, above
fastadl/ops/cell/fanout.py's ``fanout_backward``; here the means are over the edge's
M = N·H·W positions, and the final rows' upstream gradient is dL/d out itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fastadl.ops.edge import aten as fk
from fastadl.ops.edge.plan import EdgePlan, index_tensors


@dataclass
class FinalRows:
    """dL/dz and dL/dw of the rows that feed an edge's output ("finals")."""

    weights: Tensor  # (K,) mixing weights
    gw: Tensor | None  # (K,) dL/dw, accumulated; None when not needed
    G1m: Tensor | None  # (1, C, 1): -Σg/M per channel (batch statistics, chain needed)
    M: int
    batch: bool
    need_chain: bool  # gradients must flow into the conv branches

    def grads(self, gv, X, inv, w_idx, n_bn: int, d: int = 2) -> Tensor | None:
        """X: final rows, (rows, C, M) (d = 2) or (rows, M, C) (d = 1), the first n_bn of them
        BN outputs (holding xhat), the rest raw (x); gv: dL/d out laid out like one row; inv:
        broadcastable against X. Adds dL/dw into gw; returns dL/dz of the BN rows (or None)."""
        if not self.need_chain or not n_bn:
            if self.gw is not None:
                self.gw.index_add_(0, w_idx, (gv * X).sum((1, 2)))
            return None
        gxh = (gv * X).sum(d, keepdim=True)  # Σ g·xhat per row and channel
        if self.gw is not None:
            self.gw.index_add_(0, w_idx, gxh.sum((1, 2)))
        if n_bn < X.shape[0]:
            X, gxh, w_idx = X[:n_bn], gxh[:n_bn], w_idx[:n_bn]
        a = self.weights[w_idx].view(-1, 1, 1) * inv
        if not self.batch:
            return gv * a
        G1m = self.G1m if d == 2 else self.G1m.view(1, 1, -1)
        out = torch.addcmul(a * G1m, gv, a)
        return out.addcmul_(X, (a * gxh).mul_(-1.0 / self.M))


def edge_backward(g, x, weights, params, plan: EdgePlan, inter, batch: bool, needs):
    """Gradients of one edge. needs: (x, weights, per-param flags). Returns (gx, gw, gparams)."""
    N, C, H, W = g.shape
    M = N * H * W
    P, J, S, A, F = plan.P, plan.J, plan.S, plan.A, plan.F
    idx_a, idx_f = index_tensors(plan, x.device)
    need_x, need_w, need_p = needs
    need_chain = need_x or any(need_p)  # gradients must flow into the conv branches
    x_cl, inv_all = inter["x_cl"], inter["inv"]
    gw = torch.zeros_like(weights) if need_w else None
    gparams: list[Tensor | None] = [None] * len(params)
    G1m = g.sum((0, 2, 3)).div_(-M).view(1, C, 1) if batch and need_chain else None  # -Σg/M
    rows = FinalRows(weights, gw, G1m, M, batch, need_chain)
    gx_cl = None

    if A:
        Am = inter["Ab"].permute(0, 2, 3, 1).reshape(A, M, C)  # rows of (positions, channels)
        gvA = g.permute(0, 2, 3, 1).reshape(1, M, C)
        gP = rows.grads(gvA, Am, inv_all[:P].transpose(1, 2), idx_a, P if need_x else 0, 1)
        if gP is not None:
            gx_cl = pool_input_grad(gP, plan, inter, N, H, W, C)

    if J or F:
        gv = g.transpose(0, 1).reshape(1, C, M)  # dL/d out laid out like Z rows
        gZf = rows.grads(gv, inter["Z"][S:], inv_all[P + S :], idx_f, J + F)
        if need_chain:
            gr = conv_branch_grads(gZf, x, params, plan, inter, batch, need_x, need_p, gparams)
        if need_x:
            gr_rows = gr.permute(0, 2, 3, 1)  # contiguous: in place
            gr = fk.relu_grad_to(gr_rows, x_cl.permute(0, 2, 3, 1), gr_rows).permute(0, 3, 1, 2)
            gx_cl = gr if gx_cl is None else gx_cl.add_(gr)

    gx = None
    if need_x:
        if plan.skip:
            w_skip = weights[plan.skip[0]]
            gx = g * w_skip if gx_cl is None else torch.addcmul(gx_cl, g, w_skip)
        else:
            gx = gx_cl if gx_cl is not None else torch.zeros_like(x)
    return gx, gw, gparams


def pool_input_grad(gP: Tensor, plan: EdgePlan, inter, N: int, H: int, W: int, C: int) -> Tensor:
    """dL/dx through the pools from dL/dz of their BN rows, gP (P, M, C): (N, C, H_in, W_in)
    channels-last."""
    x_cl, gx_cl = inter["x_cl"], None
    maxes = iter(inter.get("pool_idx", ()))
    gps = gP.view(plan.P, N, H, W, C).permute(0, 1, 4, 2, 3)  # per pool (N, C, H, W)
    for (_, kind), gp in zip(plan.pools, gps, strict=True):
        if kind == "max":
            t = fk.max_pool_grad(gp, x_cl, next(maxes), plan.stride)
        else:
            t = fk.avg_pool_grad(gp, x_cl, plan.stride)
        gx_cl = t if gx_cl is None else gx_cl.add_(t)
    return gx_cl


def conv_branch_grads(gZf, x, params, plan: EdgePlan, inter, batch, need_x, need_p, gparams):
    """From dL/dz of the final Z rows (gZf): the conv weights' gradients into ``gparams`` and
    dL/dReLU(x) (None when x needs none)."""
    J, S, R, F = plan.J, plan.S, plan.R, plan.F
    r, gr = inter.get("r"), None
    if F:  # the factorized reduce: its 1×1 weights, and dL/dReLU(x) (new tensor)
        k = 2 * R
        gr, gparams[k], gparams[k + 1] = fk.factorized_reduce_grads(
            gZf[J], r, *params[k:], need_x, need_p[k] or need_p[k + 1]
        )
    if not J:
        return gr
    Db = inter["Db"]  # (R, N, H, W, C) at the output size
    N, H, W, C = Db.shape[1:]
    M = N * H * W
    pw, Dr = inter["pw"].view(R, C, C), Db.view(R, M, C)

    def pointwise_grads(gz: Tensor, lo: int, hi: int, slots: tuple[int, ...]) -> Tensor:
        """gz: dL/dZ[lo:hi]. Pointwise weight grads into gparams[slots]; returns the grads
        of the pointwise inputs, (hi - lo, N, C, H, W) channels-last rows."""
        if any(need_p[k] for k in slots):
            gpw = torch.bmm(gz, Dr[lo:hi]).view(hi - lo, C, C, 1, 1)
            for k, t in zip(slots, gpw.unbind(0), strict=True):
                gparams[k] = t if need_p[k] else None
        gd = torch.bmm(gz.transpose(1, 2), pw[lo:hi])
        return gd.view(hi - lo, N, H, W, C).permute(0, 1, 4, 2, 3)

    # Final rows: single-stage convs (Z rows S..J-1), separable second stages (J..R-1).
    gD = pointwise_grads(gZf[:J], S, R, plan.slots_final)
    gD1 = gD[: J - S].unbind(0)
    if S:  # separable second stages' depthwise, then their first (intermediate) BN
        gZ1 = sep_first_stage_grads(gD[J - S :], x, params, plan, inter, batch, need_p, gparams)
        gD1 = (*pointwise_grads(gZ1, 0, S, plan.slots_sep1).unbind(0), *gD1)
    for j, (gd, w, d) in enumerate(zip(gD1, params[:J], plan.dil1, strict=True)):  # first stages
        t, gparams[j] = fk.dw_grads(gd, r, w, d, need_x, need_p[j], plan.stride)
        if need_x:
            gr = t if gr is None else gr.add_(t)
    return gr


def sep_first_stage_grads(gD2, x, params, plan: EdgePlan, inter, batch, need_p, gparams):
    """dL/dz of the separable first stages' BN rows, (S, C, M), from the gradients at their
    second stages' pointwise inputs gD2; the second depthwise weights' gradients into gparams."""
    J, S, P = plan.J, plan.S, plan.P
    Z, Ym, inv_all = inter["Z"], inter["Ym"], inter["inv"]
    N, C, H, W = gD2.shape[1:]
    M = N * H * W
    dw2 = params[2 * J : 2 * J + S]
    Yb, Gy = Ym.view(S, N, H, W, C), x.new_empty(S, N, H, W, C)
    ym, gy_rows = Yb.permute(0, 1, 4, 2, 3), []
    for s in range(S):
        k = 2 * J + s
        gy, gparams[k] = fk.dw_grads(gD2[s], ym[s], dw2[s], plan.dil2[s], True, need_p[k])
        gy_rows.append(fk.relu_grad_to(gy.permute(0, 2, 3, 1), Yb[s], Gy[s]))
    if torch.compiler.is_compiling():
        Gy = torch.stack(gy_rows)
    gys, inv = Gy.view(S, M, C).transpose(1, 2), inv_all[P : P + S]  # (S, C, M)
    if not batch:
        return gys * inv
    # Σ gy·xhat = Σ gy·ReLU(xhat): gy is 0 wherever the ReLU clipped
    B1 = gys.sum(2, keepdim=True)
    B2 = (gys * Ym.transpose(1, 2)).sum(2, keepdim=True)
    gZ1 = torch.addcmul((inv * B1).mul_(-1.0 / M), gys, inv)
    return gZ1.addcmul_(Z[:S], (inv * B2).mul_(-1.0 / M))
