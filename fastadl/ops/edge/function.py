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
w_A · Am + w_F · Z[S:]. Backward of a final row with weight w (g = dL/d out, sums over M):
    dL/dz = w ι (g - Σg/M - xhat Σ(g·xhat)/M),   dL/dw = Σ_c Σ g·xhat
and of a separable first stage (w = 1, g = gy the gradient at its ReLU's output):
Σ gy·xhat = Σ gy·ReLU(xhat) since gy is 0 wherever the ReLU clipped. With running statistics
(eval mode) dL/dz = w ι g.

``recompute=True`` saves only the inputs: backward reruns the forward to rebuild the
intermediates (an edge then keeps about one input-sized tensor instead of ~22; the reference
keeps ~29, tests/ops/test_recompute.py). Every saved intermediate is a base tensor, not a view:
torch.compile traces this Function whole and refuses saved views of intermediates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fastadl.ops.edge import aten as fk

CL = torch.channels_last
_SAVED = ("x_cl", "r", "inv", "Ab", "Z", "Db", "Ym", "pw")


@dataclass(frozen=True)
class ConvSpec:
    index: int  # column of the mixing weights
    kernel: int
    dilation: int
    separable: bool  # True: a second ReLU → dw → pw → BN stage follows
    dilation2: int = 1  # of the second stage's depthwise conv


@dataclass(frozen=True)
class EdgePlan:
    """What an edge computes; built from its op modules by fastadl/ops/edge/fused.py.

    BN slots: the pools', then one per Z row. convs: separable first (Z row order). params:
    dw1 (J), pw1 (J), dw2 (S), pw2 (S), then the reduce's two 1×1 convs (2·F). The
    counts and orders below are derived once here: the forward runs ~2,100 times a step.
    """

    skip: tuple[int, ...]  # at most one
    pools: tuple[tuple[int, str], ...]  # (index, "max" | "avg")
    convs: tuple[ConvSpec, ...]
    stride: int = 1  # of the pools and the first depthwise convs
    reduce: tuple[int, ...] = ()  # the factorized reduce (stride 2's skip_connect), at most one
    _index_cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        P, J = len(self.pools), len(self.convs)
        S = sum(c.separable for c in self.convs)
        F = len(self.reduce)
        derived = dict(
            P=P, J=J, S=S, F=F, A=P + len(self.skip), R=J + S, n_bn=P + J + S + F,
            pool_kinds=tuple(kind for _, kind in self.pools),
            dil1=tuple(c.dilation for c in self.convs),
            dil2=tuple(c.dilation2 for c in self.convs[:S]),
            # param slot of each pointwise weight: rows S..R-1 (finals), rows 0..S-1
            slots_final=tuple(J + r if r < J else J + S + r for r in range(S, J + S)),
            slots_sep1=tuple(J + r for r in range(S)),
        )  # fmt: skip
        for k, v in derived.items():
            object.__setattr__(self, k, v)


def _index_tensors(plan: EdgePlan, device: torch.device) -> tuple[Tensor, Tensor]:
    """Mixing-weight columns of the Am rows and of the final Z rows (made once per device)."""
    hit = plan._index_cache.get(device)
    if hit is None:
        S = plan.S
        rows_a = [k for k, _ in plan.pools] + list(plan.skip)
        rows_f = [c.index for c in plan.convs[S:]] + [c.index for c in plan.convs[:S]]
        rows_f += list(plan.reduce)
        hit = tuple(torch.tensor(v, dtype=torch.long, device=device) for v in (rows_a, rows_f))
        plan._index_cache[device] = hit
    return hit


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
    idx_a, idx_f = _index_tensors(plan, x.device)
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


def edge_backward(g, x, weights, params, plan: EdgePlan, inter, batch: bool, needs):
    """Gradients of one edge. needs: (x, weights, per-param flags). Returns (gx, gw, gparams)."""
    N, C, H, W = g.shape
    M = N * H * W
    P, J, S, A, R, F = plan.P, plan.J, plan.S, plan.A, plan.R, plan.F
    dw1, dw2 = params[:J], params[2 * J : 2 * J + S]
    idx_a, idx_f = _index_tensors(plan, x.device)
    need_x, need_w, need_p = needs
    need_chain = need_x or any(need_p)  # gradients must flow into the conv branches
    x_cl, inv_all = inter["x_cl"], inter["inv"]
    gw = torch.zeros_like(weights) if need_w else None
    gparams: list[Tensor | None] = [None] * len(params)
    gv = g.transpose(0, 1).reshape(1, C, M) if J or F else None  # dL/d out laid out like Z rows
    G1m = g.sum((0, 2, 3)).div_(-M).view(1, C, 1) if batch and need_chain else None  # -Σg/M
    gx_cl = None

    def final_grads(gv, X, inv, w_idx, n_bn: int, d: int = 2) -> Tensor | None:
        """X: final rows, (rows, C, M) (d = 2) or (rows, M, C) (d = 1), the first n_bn of them
        BN outputs (holding xhat), the rest raw (x); gv: dL/d out laid out like one row; inv:
        broadcastable against X. Adds dL/dw into gw; returns dL/dz of the BN rows (or None)."""
        if not need_chain or not n_bn:
            if need_w:
                gw.index_add_(0, w_idx, (gv * X).sum((1, 2)))
            return None
        gxh = (gv * X).sum(d, keepdim=True)  # Σ g·xhat per row and channel
        if need_w:
            gw.index_add_(0, w_idx, gxh.sum((1, 2)))
        if n_bn < X.shape[0]:
            X, gxh, w_idx = X[:n_bn], gxh[:n_bn], w_idx[:n_bn]
        a = weights[w_idx].view(-1, 1, 1) * inv
        if not batch:
            return gv * a
        out = torch.addcmul(a * (G1m if d == 2 else G1m.view(1, 1, -1)), gv, a)
        return out.addcmul_(X, (a * gxh).mul_(-1.0 / M))

    if A:
        Am = inter["Ab"].permute(0, 2, 3, 1).reshape(A, M, C)  # rows of (positions, channels)
        gvA = g.permute(0, 2, 3, 1).reshape(1, M, C)
        gP = final_grads(gvA, Am, inv_all[:P].transpose(1, 2), idx_a, P if need_x else 0, 1)
        if gP is not None:  # (P, M, C) → per pool (N, C, H, W) channels-last
            maxes = iter(inter.get("pool_idx", ()))
            gps = gP.view(P, N, H, W, C).permute(0, 1, 4, 2, 3)
            for (_, kind), gp in zip(plan.pools, gps, strict=True):
                if kind == "max":
                    t = fk.max_pool_grad(gp, x_cl, next(maxes), plan.stride)
                else:
                    t = fk.avg_pool_grad(gp, x_cl, plan.stride)
                gx_cl = t if gx_cl is None else gx_cl.add_(t)

    if J or F:
        Z, Db, Ym = inter["Z"], inter["Db"], inter["Ym"]
        gZf = final_grads(gv, Z[S:], inv_all[P + S :], idx_f, J + F)
    r, gr = inter.get("r"), None
    if F and need_chain:  # the factorized reduce: its 1×1 weights, and dL/dReLU(x) (new tensor)
        k = 2 * R
        gr, gparams[k], gparams[k + 1] = fk.factorized_reduce_grads(
            gZf[J], r, *params[k:], need_x, need_p[k] or need_p[k + 1]
        )
    if J and need_chain:
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
            Yb, Gy = Ym.view(S, N, H, W, C), x.new_empty(S, N, H, W, C)
            ym, gD2, gy_rows = Yb.permute(0, 1, 4, 2, 3), gD[J - S :], []
            for s in range(S):
                k = 2 * J + s
                gy, gparams[k] = fk.dw_grads(gD2[s], ym[s], dw2[s], plan.dil2[s], True, need_p[k])
                gy_rows.append(fk.relu_grad_to(gy.permute(0, 2, 3, 1), Yb[s], Gy[s]))
            if torch.compiler.is_compiling():
                Gy = torch.stack(gy_rows)
            gys, inv = Gy.view(S, M, C).transpose(1, 2), inv_all[P : P + S]  # (S, C, M)
            if batch:  # Σ gy·xhat = Σ gy·ReLU(xhat): gy is 0 wherever the ReLU clipped
                B1 = gys.sum(2, keepdim=True)
                B2 = (gys * Ym.transpose(1, 2)).sum(2, keepdim=True)
                gZ1 = torch.addcmul((inv * B1).mul_(-1.0 / M), gys, inv)
                gZ1.addcmul_(Z[:S], (inv * B2).mul_(-1.0 / M))
            else:
                gZ1 = gys * inv
            gD1 = (*pointwise_grads(gZ1, 0, S, plan.slots_sep1).unbind(0), *gD1)
        for j, (gd, w, d) in enumerate(zip(gD1, dw1, plan.dil1, strict=True)):  # first stages
            t, gparams[j] = fk.dw_grads(gd, r, w, d, need_x, need_p[j], plan.stride)
            if need_x:
                gr = t if gr is None else gr.add_(t)
    if (J or F) and need_x:
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
