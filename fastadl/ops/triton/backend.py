"""The `triton` mixed-op backend: reference_mixed_op's function through the Triton kernels.

One edge, all branches read the same x (channels-last inside; fastadl/kernels/triton/nhwc.py says why):
- max_pool_3x3 / avg_pool_3x3: one fused pool kernel gives both pools and the per-channel sums
  their BatchNorms need; BN is then a per-channel affine map in plain torch.
- skip_connect: x itself.
- sep_conv_3x3 / sep_conv_5x5 / dil_conv_3x3 / dil_conv_5x5: their first ReLU → depthwise conv
  runs as one fused kernel reading x once (when all four are present; else one depthwise kernel
  each, ReLU fused). The 1×1 pointwise convs are torch GEMMs on channels-last memory and the
  BatchNorms are the ops' own modules (so running stats update exactly as in the reference).
  The sep convs' second ReLU → depthwise conv is the depthwise kernel with ReLU fused.
- the weighted sum over branches (and its dα) is the weighted-sum kernel.
Anything else (an unknown op, or a module configured outside what the kernels cover) falls back
to its reference module. Parameters stay in the modules of ``ops``: nothing is copied.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastadl.ops.reference import DilConv, Identity, PoolBN, SepConv
from fastadl.ops.triton import functions as tf

# edge_dwconv's branch order: (kernel size, dilation) of each first depthwise conv.
_EDGE_BRANCHES = ((3, 1), (5, 1), (3, 2), (5, 2))


def _nhwc(t: Tensor) -> Tensor:
    return t.permute(0, 2, 3, 1)


def _nchw(t: Tensor) -> Tensor:
    return t.permute(0, 3, 1, 2)


def _dw_spec(conv: nn.Module) -> tuple[int, int] | None:
    """(kernel size, dilation) of a depthwise 'same' conv the kernels cover, else None."""
    if not isinstance(conv, nn.Conv2d) or conv.bias is not None or conv.padding_mode != "zeros":
        return None
    (k, k2), (d, d2), C = conv.kernel_size, conv.dilation, conv.in_channels
    ok = (
        k == k2 and d == d2 and (k, d) in _EDGE_BRANCHES and conv.stride == (1, 1)
        and conv.padding == (d * (k - 1) // 2,) * 2 and conv.groups == C == conv.out_channels
    )  # fmt: skip
    return (k, d) if ok else None


def _is_pointwise(conv: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
        and conv.padding == (0, 0) and conv.groups == 1
    )  # fmt: skip


def _conv_stages(op: nn.Module) -> list[tuple[nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]] | None:
    """A SepConv/DilConv's (depthwise, pointwise, BN) per ReLU-dw-pw-BN stage, if covered."""
    if not isinstance(op, SepConv | DilConv) or len(op.op) % 4:
        return None
    mods = list(op.op)
    stages = list(zip(mods[1::4], mods[2::4], mods[3::4], strict=True))
    ok = all(isinstance(m, nn.ReLU) for m in mods[0::4]) and all(
        _dw_spec(dw) and _is_pointwise(pw) and isinstance(bn, nn.BatchNorm2d)
        for dw, pw, bn in stages
    )
    return stages if ok else None


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return v if isinstance(v, tuple) else (v, v)


def _pool_kind(op: nn.Module) -> str | None:
    """'max' or 'avg' for a PoolBN the fused pool kernel covers (3×3, stride 1, pad 1), else None."""
    if not isinstance(op, PoolBN) or not isinstance(op.bn, nn.BatchNorm2d):
        return None
    p = op.pool
    ok = (
        isinstance(p, nn.MaxPool2d | nn.AvgPool2d) and not p.ceil_mode
        and (_pair(p.kernel_size), _pair(p.stride), _pair(p.padding)) == ((3, 3), (1, 1), (1, 1))
    )  # fmt: skip
    if ok and isinstance(p, nn.MaxPool2d) and _pair(p.dilation) == (1, 1):
        return "max"
    if (
        ok
        and isinstance(p, nn.AvgPool2d)
        and not p.count_include_pad
        and p.divisor_override is None
    ):
        return "avg"
    return None


def _pointwise_bn(y: Tensor, pw: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    """y: (N, H, W, C) → BN(pw(y)) in (N, H, W, C); the 1×1 conv as a channels-last GEMM."""
    return _nhwc(bn(_nchw(F.linear(y, pw.weight.flatten(1), pw.bias))))


def _batch_norm_from_sums(
    p: Tensor, s: Tensor, ss: Tensor, p0: Tensor, bn: nn.BatchNorm2d
) -> Tensor:
    """bn(p) for p: (N, H, W, C) given s = Σ (p − p0) and ss = Σ (p − p0)² per channel (C,).

    Follows nn.BatchNorm2d.forward: batch statistics (biased variance) in training mode or
    without running stats, running-stat update with the unbiased variance, eval uses the running
    stats. The shift p0 (a value of p per channel, fastadl/kernels/triton/pool.py) keeps Var = E[d²] − E[d]² of
    d = p − p0 accurate: unshifted it cancels when |mean| ≫ std.
    """
    count = p.numel() // p.shape[-1]
    if bn.training or bn.running_mean is None:
        if count == 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {tuple(p.shape)}"
            )
        offset = s / count
        mean = p0 + offset
        var = (ss / count - offset * offset).clamp_min(0.0)
        if bn.training and bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                f = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1 - f).add_(mean, alpha=f)
                bn.running_var.mul_(1 - f).add_(var * (count / (count - 1)), alpha=f)
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return torch.addcmul(shift.to(p.dtype), p, scale.to(p.dtype))


def triton_mixed_op(
    x: Tensor, weights: Tensor, ops: Sequence[nn.Module], primitives: Sequence[str]
) -> Tensor:
    """x: (N, C, H, W); weights: (K,) in ``primitives`` order → (N, C, H, W) Σ_k w_k · op_k(x).

    Same function, gradients and BN running-stat updates as reference_mixed_op; the result is a
    channels-last (N, C, H, W) tensor.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    ops, primitives = list(ops), list(primitives)
    if len(ops) != len(primitives) or weights.shape != (len(ops),):
        raise ValueError(
            f"{len(primitives)} primitives, {len(ops)} ops and weights of shape "
            f"{tuple(weights.shape)} do not match"
        )
    live = [k for k, name in enumerate(primitives) if name != "none"]
    if not live:  # every candidate is `none`: the edge contributes nothing
        return x.new_zeros(x.shape)
    xh = _nhwc(x).contiguous()  # the edge's one layout change, shared by every branch
    ys: dict[int, Tensor] = {}  # primitive index → branch output, (N, H, W, C)

    # plain loops, not comprehensions with :=, which torch.compile cannot trace
    pools: dict[int, str] = {}
    convs: dict[int, list[tuple[nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]]] = {}
    for k in live:
        if kind := _pool_kind(ops[k]):
            pools[k] = kind
        elif stages := _conv_stages(ops[k]):
            convs[k] = stages

    if pools:
        mx, av, stats = tf.pool3x3(xh)
        for k, kind in pools.items():
            p, s, ss, shift = (
                (mx, stats[0], stats[1], stats[4]) if kind == "max" else (av, *stats[2:4], stats[5])
            )
            ys[k] = _batch_norm_from_sums(p, s, ss, shift, ops[k].bn)

    ys.update(_conv_branches(xh, convs))

    for k in live:
        if k not in ys:
            ys[k] = xh if isinstance(ops[k], Identity) else _nhwc(ops[k](x))

    order = sorted(ys)
    if order == list(range(order[0], order[-1] + 1)):
        w = weights[order[0] : order[-1] + 1]
    else:
        w = weights[torch.tensor(order, device=weights.device)]
    out = tf.weighted_sum(torch.stack([ys[k] for k in order]), w)
    return _nchw(out)


def _conv_branches(xh: Tensor, convs: dict[int, list]) -> dict[int, Tensor]:
    """Each conv branch's output (N, H, W, C); the four first-stage depthwise convs of a full
    edge run as one kernel over one read of x."""
    ys: dict[int, Tensor] = {}
    first: dict[int, Tensor] = {}  # ReLU → first depthwise conv of each conv branch
    by_spec = {_dw_spec(st[0][0]): k for k, st in convs.items()}
    if len(convs) == 4 and sorted(by_spec) == sorted(_EDGE_BRANCHES):
        dws = [convs[by_spec[spec]][0][0].weight for spec in _EDGE_BRANCHES]
        for spec, y in zip(_EDGE_BRANCHES, tf.edge_dwconv(xh, *dws), strict=True):
            first[by_spec[spec]] = y
    else:
        for k, st in convs.items():
            first[k] = tf.dwconv(xh, st[0][0].weight, _dw_spec(st[0][0])[1], relu=True)
    for k, st in convs.items():
        y = _pointwise_bn(first[k], *st[0][1:])
        for dw, pw, bn in st[1:]:
            y = _pointwise_bn(tf.dwconv(y, dw.weight, dw.dilation[0], relu=True), pw, bn)
        ys[k] = y
    return ys
