"""The backward of one fan-out group (fanout.py's ``fanout_forward``; its layouts apply here).

The conv weights' gradients are not computed here: ``fanout_backward`` returns their operands
and the cell computes them for all its groups at once (wgrad.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastadl.ops.cell.cpu.groups import group_backward
from fastadl.ops.cell.cpu.pools import pools_grad_native
from fastadl.ops.cell.cpu.rows import bn_backward, mix_backward
from fastadl.ops.cell.fanout import (
    GroupWeights,
    dw_stage_input_grad,
    pointwise_input_grad,
    stage_runs,
)
from fastadl.ops.edge import aten as fk
from fastadl.ops.edge.plan import EdgePlan


def pools_grad(gp: Tensor, kinds, indices, x_cl: Tensor, gx: Tensor | None) -> Tensor:
    """ATen's pool backwards for upstream gradients gp (n_pool, M, C), summed into gx."""
    PN, C, H, W = x_cl.shape
    maxes = iter(indices)
    for kind, gk in zip(kinds, gp.view(-1, PN, H, W, C).permute(0, 1, 4, 2, 3), strict=True):
        t = fk.max_pool_grad(gk, x_cl, next(maxes)) if kind == "max" else fk.avg_pool_grad(gk, x_cl)
        t = t.permute(0, 2, 3, 1).reshape(-1, C)
        gx = t if gx is None else gx + t
    return gx


# The derivation every hand-written backward of a mixed op uses (this one, the per-edge
# `fused` backend's fastadl/ops/edge/backward.py, the C++ group kernels behind group_backward).
#
# A final row z (one kind of one edge, per path) enters the output as w · x̂ with
# x̂ = (z - μ) ι, ι = 1 / sqrt(σ² + eps), μ and σ² the means over one path's Q positions. With
# g = dL/d out of its edge and means over the same Q positions:
#     dL/dz = w ι (g - mean(g) - x̂ mean(g·x̂)),    dL/dw = Σ g·x̂
# (the two mean terms are μ's and σ²'s dependence on z). With running statistics μ and ι are
# constants and dL/dz = w ι g. A separable first stage is the same with w = 1 and g the
# gradient at its ReLU; Σ g·x̂ = Σ g·ReLU(x̂) there because g is 0 wherever the ReLU clipped,
# so ReLU(x̂) need not be kept. Statistics are per path, so the means never mix paths.
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
    gradients at each stage's pointwise and depthwise outputs (fastadl/ops/cell/wgrad.py turns
    them into weight gradients)."""
    H, W = x.shape[2:]
    need_chain = need_x or need_params
    if batch and need_chain and inter.get("native_group"):  # one C++ call, as its forward
        runs = stage_runs(plan, H, W) if plan.J else None
        return group_backward(g, x, P, gw, plan, inter, runs, need_x, need_w, need_params)
    ga = gx = None  # gx: (M, C)
    if plan.A and (need_x or need_w):
        gx, ga = mix_rows_backward(g, x, P, gw, plan, inter, batch, need_x, need_w)
    ops = gf = None
    if plan.J and not need_chain:
        gf = final_weight_grads(g, P, plan, inter) if need_w else None
        return None, (ga, gf) if need_w else None, None
    if plan.J:
        gx, gf, ops = conv_rows_backward(g, x, P, gw, plan, inter, batch, need_x, need_w, gx)
        ops = ops if need_params else None
    if need_x and gx is None:
        gx = x.new_zeros(g.shape[0], x.shape[1])
    return gx, ((ga, gf) if need_w else None), ops


def mix_rows_backward(g, x, P, gw: GroupWeights, plan: EdgePlan, inter, batch, need_x, need_w):
    """The A rows (the pools' BN outputs, then x for skip_connect): dL/dx through them (or
    None) and the mixing weights' gradients ga (A, E) (None unless need_w)."""
    PN, C, H, W = x.shape
    M, n_pool = g.shape[0], plan.P
    Q = M // P
    Am = inter["Ab"].permute(0, 2, 3, 1).reshape(plan.A, M, C)
    # gA[a] = Σ_e g[:, e] wa[a, e]; ga[a, e] = Σ_{m,c} g[m, e, c] A[a, m, c]
    gA, ga = mix_backward(g.contiguous(), Am, gw.wa, need_w)
    if not need_x:
        return None, ga
    gx = gA[n_pool] if plan.skip else None
    if not n_pool:
        return gx, ga
    gp = gA[:n_pool].view(n_pool, P, Q, 1, C).permute(1, 2, 0, 3, 4)  # in place
    if batch:
        xh = Am[:n_pool].view(n_pool, P, Q, 1, C).permute(1, 2, 0, 3, 4)
        bn_backward(gp, xh, inter["inv_pool"], gp)
    else:
        gp.mul_(inter["inv_pool"].unsqueeze(1))
    if inter["native_pools"]:  # both pools' gradients in one pass, into gx
        gx = pools_grad_native(gA[:n_pool], plan.pool_kinds, inter["pool_idx"], (PN, H, W), gx)
    else:
        gx = pools_grad(gA[:n_pool], plan.pool_kinds, inter["pool_idx"], inter["x_cl"], gx)
    return gx, ga


def final_weight_grads(g, P: int, plan: EdgePlan, inter) -> Tensor:
    """dL/dw of the final rows alone, Σ g·x̂ per row and edge (J, E): what the α step needs
    when no gradient flows into x or the conv weights."""
    M, E, C = g.shape
    Q, S, J = M // P, plan.S, plan.J
    n1 = J - S
    gq = g.view(P, Q, E, C).unsqueeze(2)
    f64 = torch.float64  # summed in double, as rows.py's sums (the note above _bn_backward_aten)
    parts = (
        [(inter["Z1"].view(P, Q, J, E, C)[:, :, S:] * gq).sum((0, 1, 4), dtype=f64)] if n1 else []
    )
    parts += [(inter["Z2"].view(P, Q, S, E, C) * gq).sum((0, 1, 4), dtype=f64)] if S else []
    return torch.cat(parts).to(g.dtype)


def conv_rows_backward(g, x, P, gw: GroupWeights, plan: EdgePlan, inter, batch, need_x, need_w, gx):
    """The conv kinds' rows: dL/dx through them added into gx, their mixing weights' gradients
    gf (J, E) (None unless need_w) and the conv weight gradients' operands."""
    PN, C, H, W = x.shape
    M, E = g.shape[0], g.shape[1]
    Q, S, J = M // P, plan.S, plan.J
    runs1, runs2 = stage_runs(plan, H, W)
    Z1 = inter["Z1"]
    n1 = J - S
    wf = gw.wf  # (J, E)
    Z1v = Z1.view(P, Q, J, E, C)
    inv1, inv2 = inter["inv1"], inter["inv2"]  # (P|1, rows, E, C)
    # dL/dz of the final rows: w ι (g - mean g - x̂ mean(g·x̂)), g shared by the rows
    gz1 = x.new_empty(M, J, E, C)
    gz1v = gz1.view(P, Q, J, E, C)
    gq = g.view(P, Q, E, C).unsqueeze(2)
    parts = []

    def final_rows(xh, inv, w, gz):
        n = xh.shape[2]
        if batch:
            return bn_backward(gq.expand(P, Q, n, E, C), xh, inv, gz, w, want_gsum=need_w)
        torch.mul(gq, (inv * w.view(1, n, E, 1)).unsqueeze(1), out=gz)
        return (xh * gq).sum((0, 1, 4), dtype=torch.float64).to(g.dtype) if need_w else None

    if n1:
        parts.append(final_rows(Z1v[:, :, S:], inv1[:, S:], wf[:n1], gz1v[:, :, S:]))
    gz2 = gd2 = None
    if S:
        gz2 = x.new_empty(M, S, E, C)
        Z2v = inter["Z2"].view(P, Q, S, E, C)
        parts.append(final_rows(Z2v, inv2, wf[n1:], gz2.view(P, Q, S, E, C)))
        gd2 = pointwise_input_grad(gz2, gw.pw2)
        gy = dw_stage_input_grad(gd2, inter["wr2"], runs2, PN, H, W)  # (M, S, E, C)
        gyv = gy.view(P, Q, S, E, C)
        # BN of the sep first stages with a ReLU after it, upstream gradient gy; the ReLU
        # passes where x̂ > 0 (Y = ReLU(x̂) is not kept)
        if batch:
            bn_backward(gyv, Z1v[:, :, :S], inv1[:, :S], gz1v[:, :, :S],
                        mask=Z1v[:, :, :S])  # fmt: skip
        else:
            gy = fk.relu_grad_to(gy, Z1[:, :S], gy).view(P, Q, S, E, C)
            torch.mul(gy, inv1[:, :S].unsqueeze(1), out=gz1v[:, :, :S])
    gf = (torch.cat(parts) if len(parts) > 1 else parts[0]) if need_w else None  # (J, E)
    gd1 = pointwise_input_grad(gz1, gw.pw1)  # (M, J, E, C)
    if need_x:
        gr = dw_stage_input_grad(gd1, inter["wr1"], runs1, PN, H, W)  # per kind and edge
        gsum = gr.view(M, -1, C).sum(1)  # (M, C): the repeated ReLU(x) is one tensor
        x_rows = inter["x_cl"].permute(0, 2, 3, 1).reshape(M, C)
        gsum = fk.relu_grad_to(gsum, x_rows, gsum)
        gx = gsum if gx is None else gx.add_(gsum)
    return gx, gf, dict(gz1=gz1, gd1=gd1, gz2=gz2, gd2=gd2)
