"""A fan-out group's forward with batch statistics as one C++ call
(fastadl/kernels/cpu/group.cpp): the same work and results as fastadl/ops/cell/fanout.py's
fanout_forward, without its ~60 Python-dispatched calls per group.

Taken where every part has a C++ kernel: plain CPU float32/64 tensors, maps of at most
conv_runs.NATIVE_MAX_PIXELS pixels (the depthwise kernels' range), pools among max/avg each at
most once; fanout_forward runs the Python route otherwise (and for running statistics).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from fastadl.kernels.cpu import kernel
from fastadl.ops.cell import conv_runs
from fastadl.ops.cell.cpu.pools import pools_native_ok
from fastadl.ops.cell.cpu.rows import NATIVE_POINTWISE_CHANNELS

CL = torch.channels_last


def group_native_ok(x: Tensor, plan) -> bool:
    """Whether group_forward takes the group of state x (P·N, C, H, W) channels-last."""
    return (
        x.shape[2] * x.shape[3] <= conv_runs.NATIVE_MAX_PIXELS  # read here: tests lower it
        and x.shape[1] in NATIVE_POINTWISE_CHANNELS  # elsewhere MKL's 1x1s are the route
        and x.is_contiguous(memory_format=CL)
        and pools_native_ok(x, plan.pool_kinds)  # accepts(x) and pools the kernel knows
    )


def _runs(args: list[int], runs, wr) -> None:
    for run, w in zip(runs, wr, strict=True):
        args += [run.lo, run.hi, run.kh, run.kw, run.dilation, w.data_ptr(),
                 w.stride(0), w.stride(2), w.stride(3)]  # fmt: skip


def _ptr(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _geometry(x: Tensor, P: int, E: int, plan, runs) -> list[int]:
    PN, C, H, W = x.shape
    kinds, J, S = plan.pool_kinds, plan.J, plan.S
    return [P, PN, H, W, C, E, plan.P,
            kinds.index("max") if "max" in kinds else -1,
            kinds.index("avg") if "avg" in kinds else -1,
            int(bool(plan.skip)), J, S, len(runs[0]) if J else 0, len(runs[1]) if S else 0]  # fmt: skip


def group_forward(x: Tensor, P: int, gw, plan, eps: float, runs, stats_out):
    """fanout_forward's (out (M, E, C), intermediates) for batch statistics; x as in
    group_native_ok; runs: fanout.stage_runs(plan, H, W) (None without convs); stats_out as fanout_forward's."""
    PN, C, H, W = x.shape
    M, E = PN * H * W, gw.wa.shape[1]
    n_pool, J, S, A = plan.P, plan.J, plan.S, plan.A
    kinds = plan.pool_kinds
    new = x.new_empty
    out = new(M, E, C)
    inter: dict = {"x_cl": x, "native_group": True}
    Ab = arg = inv_pool = None
    if A:
        Ab = torch.empty((A * PN, C, H, W), dtype=x.dtype, device=x.device, memory_format=CL)
        arg = (
            torch.empty((PN, H, W, C), dtype=torch.int8, device=x.device)
            if "max" in kinds
            else None
        )
        inv_pool = new(P, n_pool, 1, C) if n_pool else None
        inter.update(native_pools=True, Ab=Ab, pool_idx=[] if arg is None else [arg],
                     inv_pool=inv_pool)  # fmt: skip
        if plan.skip:  # x_cl is Ab's last row, as pool_rows gives it
            inter["x_cl"] = Ab[n_pool * PN :]
    Z1 = inv1 = Z2 = inv2 = None
    if J:
        Z1, inv1 = new(M, J, E, C), new(P, J, E, C)
        if S:
            Z2, inv2 = new(M, S, E, C), new(P, S, E, C)
        inter.update(Z1=Z1, Z2=Z2, inv1=inv1, inv2=inv2, wr1=gw.wr1, wr2=gw.wr2)
    wa, wf = gw.wa, gw.wf
    mean, var = stats_out if stats_out is not None else (None, None)
    args = [*_geometry(x, P, E, plan, runs),
            x.data_ptr(), out.data_ptr(), _ptr(Ab), _ptr(arg), wa.data_ptr(), *wa.stride(),
            _ptr(inv_pool), _ptr(Z1), _ptr(inv1), _ptr(gw.pw1),
            *(gw.pw1.stride() if J else (0,) * 4), _ptr(Z2), _ptr(inv2), _ptr(gw.pw2),
            *(gw.pw2.stride() if S else (0,) * 4), wf.data_ptr(), *wf.stride(),
            _ptr(mean), _ptr(var), 0 if mean is None else mean.shape[0],
            0 if mean is None else mean.stride(0)]  # fmt: skip
    if J:
        _runs(args, runs[0], gw.wr1)
    if S:
        _runs(args, runs[1], gw.wr2)
    fn = kernel("group_forward", x.dtype)
    fn((ctypes.c_int64 * len(args))(*args), eps)
    return out, inter


def group_backward(g: Tensor, x: Tensor, P: int, gw, plan, inter: dict, runs, need_x: bool,
                   need_w: bool, need_params: bool):  # fmt: skip
    """fanout_backward's (gx, (ga, gf), conv operands) for a group that group_forward ran, with
    batch statistics and the chain below the finals needed (need_x or need_params)."""
    M, E, C = g.shape
    J, S, A = plan.J, plan.S, plan.A
    new = g.new_empty
    g = g.contiguous()
    gx = new(M, C) if need_x else None
    ga = new(A, E) if need_w and A else None
    gf = new(J, E) if need_w and J else None
    gz1 = gd1 = gz2 = gd2 = None
    if J:
        gz1, gd1 = new(M, J, E, C), new(M, J, E, C)
        if S:
            gz2, gd2 = new(M, S, E, C), new(M, S, E, C)
    pool_idx = inter.get("pool_idx") or [None]
    args = [*_geometry(x, P, E, plan, runs), int(need_x), int(need_w),
            g.data_ptr(), inter["x_cl"].data_ptr(), _ptr(inter.get("Ab")), _ptr(pool_idx[0]),
            gw.wa.data_ptr(), *gw.wa.stride(), _ptr(inter.get("inv_pool")),
            _ptr(inter.get("Z1")), _ptr(inter.get("inv1")), _ptr(gw.pw1),
            *(gw.pw1.stride() if J else (0,) * 4), _ptr(inter.get("Z2")), _ptr(inter.get("inv2")),
            _ptr(gw.pw2), *(gw.pw2.stride() if S else (0,) * 4), gw.wf.data_ptr(),
            *gw.wf.stride(), _ptr(gx), _ptr(ga), _ptr(gf), _ptr(gz1), _ptr(gd1), _ptr(gz2),
            _ptr(gd2)]  # fmt: skip
    if J:
        _runs(args, runs[0], gw.wr1)
    if S:
        _runs(args, runs[1], gw.wr2)
    kernel("group_backward", g.dtype)((ctypes.c_int64 * len(args))(*args))
    ops = dict(gz1=gz1, gd1=gd1, gz2=gz2, gd2=gd2) if need_params and J else None
    return gx, ((ga, gf) if need_w else None), ops
