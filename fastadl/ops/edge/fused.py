"""The `fused` mixed-op backend: reference_mixed_op's function in few, large PyTorch ops.

The parameters stay in the reference modules (``ops``); this file reads them, describes the
edge as an EdgePlan, runs FusedMixedOpFunction (fastadl/ops/edge/function.py: forward and
hand-written backward over all branches at once) and updates the BatchNorm modules' running
statistics exactly as their own forward would (momentum, cumulative average when momentum is
None, num_batches_tracked). Edges of stride 1 and 2 (DARTS' reduction edges: strided pools and
first depthwise convs, the factorized reduce as skip_connect) are covered. Anything the plan
does not cover (an affine BN, an unknown module, BNs in mixed train/eval modes, ops of different
strides) runs the reference instead, so the result is always the reference's function.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fastadl.ops.bn_stats import batch_stats_mode, update_bn_running_stats
from fastadl.ops.edge.aten import output_shape
from fastadl.ops.edge.function import FusedMixedOpFunction
from fastadl.ops.edge.plan import ConvSpec, EdgePlan
from fastadl.ops.reference import DilConv, FactorizedReduce, Identity, PoolBN, SepConv, Zero


def _plain_bn(bn: nn.Module, C: int) -> bool:
    return (
        isinstance(bn, nn.BatchNorm2d) and not bn.affine and bn.num_features == C
        and type(bn).forward is nn.BatchNorm2d.forward
    )  # fmt: skip


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return v if isinstance(v, tuple) else (v, v)


def _dw(conv: nn.Module, C: int, stride: int) -> tuple[int, int] | None:
    """(kernel, dilation) of a bias-free depthwise 'same' conv over C channels, else None."""
    if type(conv) is not nn.Conv2d or conv.bias is not None or conv.padding_mode != "zeros":
        return None
    (k, k2), (d, d2) = conv.kernel_size, conv.dilation
    ok = (
        k == k2 and d == d2 and k % 2 == 1 and conv.stride == (stride, stride)
        and conv.padding == (d * (k - 1) // 2,) * 2
        and conv.groups == conv.in_channels == conv.out_channels == C
    )  # fmt: skip
    return (k, d) if ok else None


def _pw(conv: nn.Module, C: int, C_out: int | None = None, stride: int = 1) -> bool:
    return (
        type(conv) is nn.Conv2d and conv.bias is None and conv.kernel_size == (1, 1)
        and conv.stride == (stride, stride) and conv.padding == (0, 0) and conv.groups == 1
        and conv.in_channels == C and conv.out_channels == (C if C_out is None else C_out)
        and conv.padding_mode == "zeros"
    )  # fmt: skip


def _reduce_ok(op: FactorizedReduce, C: int) -> bool:
    """The factorized reduce as fastadl/ops/reference.py builds it, over C channels."""
    return (
        type(op.relu) is nn.ReLU and _pw(op.conv_1, C, C - C // 2, 2)
        and _pw(op.conv_2, C, C // 2, 2) and _plain_bn(op.bn, C)
    )  # fmt: skip


def _conv_stages(op: nn.Module, C: int, stride: int):
    """[(kernel, dilation, dw conv, pw conv, bn)] per ReLU → dw → pw → BN stage, or None.
    Only the first stage's depthwise conv is strided (DARTS)."""
    seq = op.op
    if len(seq) not in (4, 8):
        return None
    stages = []
    for s in range(0, len(seq), 4):
        relu, dw, pw, bn = seq[s : s + 4]
        spec = _dw(dw, C, stride if s == 0 else 1)
        if type(relu) is not nn.ReLU or spec is None or not _pw(pw, C) or not _plain_bn(bn, C):
            return None
        stages.append((*spec, dw, pw, bn))
    return stages


# ModuleList of ops → (key, built plan): building one walks ~40 submodules, a cost comparable to
# the whole edge at the coarsest trellis level, so it is done once per edge.
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_plan(ops: Sequence[nn.Module], primitives: Sequence[str], C: int):
    """build_plan, remembered per ``ops`` module while its op modules and primitives stay."""
    if not isinstance(ops, nn.Module) or torch.compiler.is_compiling():
        return build_plan(ops, primitives, C)
    key = (tuple(map(id, ops)), tuple(primitives), C)
    hit = _PLANS.get(ops)
    if hit is None or hit[0] != key:
        hit = (key, build_plan(ops, primitives, C))
        _PLANS[ops] = hit
    return hit[1]


def _edge_stride(ops: Sequence[nn.Module], primitives: Sequence[str]) -> int | None:
    """The one stride of the edge's (non-`none`) reference ops, or None when they disagree or
    one is not a reference op."""
    strides = set()
    for op, name in zip(ops, primitives, strict=True):
        if name == "none" and type(op) is not Zero:  # never computed: its stride is moot
            continue
        if type(op) is PoolBN:
            strides.add(_pair(op.pool.stride))
        elif type(op) in (SepConv, DilConv):
            strides.add(op.op[1].stride)
        elif type(op) in (Identity, FactorizedReduce, Zero):
            strides.add((op.stride,) * 2)
        else:
            return None
    if len(strides) > 1:
        return None
    (s, s2) = strides.pop() if strides else (1, 1)
    return s if s == s2 and s in (1, 2) else None


def build_plan(ops: Sequence[nn.Module], primitives: Sequence[str], C: int):
    """(EdgePlan, the convs whose weights are FusedMixedOpFunction's params in its order, BNs in
    slot order), or None when some op is outside what the fused path covers."""
    stride = _edge_stride(ops, primitives)
    if stride is None:
        return None
    skip, reduce, pools, pool_bns, finals, seps = [], [], [], [], [], []
    for k, (op, name) in enumerate(zip(ops, primitives, strict=True)):
        if name == "none":
            continue
        if type(op) is Identity:
            skip.append(k)
        elif type(op) is FactorizedReduce and _reduce_ok(op, C):
            reduce.append(k)
        elif type(op) is PoolBN and _plain_bn(op.bn, C):
            pools.append((k, op.kind))
            pool_bns.append(op.bn)
        elif type(op) in (SepConv, DilConv) and (stages := _conv_stages(op, C, stride)):
            (finals if len(stages) == 1 else seps).append((k, stages))
        else:
            return None
    convs, dw1, pw1, bn1, dw2, pw2, bn2 = [], [], [], [], [], [], []
    for k, stages in seps + finals:  # EdgePlan's Z row order: separable first
        (kk, d, dw, pw, bn), second = stages[0], stages[1:]
        convs.append(ConvSpec(k, kk, d, bool(second), second[0][1] if second else 1))
        dw1.append(dw)
        pw1.append(pw)
        bn1.append(bn)
        if second:
            dw2.append(second[0][2])
            pw2.append(second[0][3])
            bn2.append(second[0][4])
    if len(skip) + len(reduce) > 1:  # skip_connect listed twice: left to the reference
        return None
    plan = EdgePlan(tuple(skip), tuple(pools), tuple(convs), stride, tuple(reduce))
    fr = [ops[k] for k in reduce]
    convs_out = (*dw1, *pw1, *dw2, *pw2, *(c for op in fr for c in (op.conv_1, op.conv_2)))
    return plan, convs_out, pool_bns + bn1 + bn2 + [op.bn for op in fr]


def fused_mixed_op(
    x: Tensor,
    weights: Tensor,
    ops: Sequence[nn.Module],
    primitives: Sequence[str],
    recompute: bool = False,
) -> Tensor | None:
    """Σ_k weights[k] · ops[k](x), x: (N, C, H, W) → (N, C, ceil(H/s), ceil(W/s)) for the ops'
    stride s; None if not covered.

    recompute: keep only the inputs for backward and recompute the intermediates there.
    """
    if x.dim() != 4:
        return None
    built = cached_plan(ops, primitives, x.shape[1])
    if built is None:
        return None
    plan, convs, bns = built
    params = tuple(conv.weight for conv in convs)
    batch = batch_stats_mode(bns)
    if batch is None:
        return None
    N, _, H, W = output_shape(x, plan.stride)
    count = N * H * W  # positions each BN normalises over
    if batch and bns and count <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}"
        )
    # **decision**: half/bfloat16 inputs (autocast) are computed in float32: the hand-made
    # BatchNorm sums need it, and the output is cast back to the input's dtype.
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    rstats = None
    if not batch:
        rstats = torch.stack(
            [
                torch.stack([bn.running_mean for bn in bns]),
                torch.stack([bn.running_var for bn in bns]),
            ]
        ).to(dtype)
    eps = bns[0].eps if bns else 1e-5
    args = (x, weights, *params)
    if any(t.dtype != dtype for t in args):
        args = tuple(t.to(dtype) for t in args)
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            out, stats = FusedMixedOpFunction.apply(
                *args[:2], rstats, plan, eps, recompute, *args[2:]
            )
    else:
        out, stats = FusedMixedOpFunction.apply(*args[:2], rstats, plan, eps, recompute, *args[2:])
    if batch and bns:
        update_bn_running_stats(bns, stats, count)
    return out if out.dtype == x.dtype else out.to(x.dtype)
