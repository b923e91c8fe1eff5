"""MixedOp: the DARTS-style continuous relaxation of one edge, ``forward(x, weights)``.

A drop-in for DARTS-style code (``from fastadl import MixedOp``): DARTS' constructor
``MixedOp(C, stride)`` and forward signature, the op modules in ``self.ops`` in ``primitives``
order, and a ``backend`` that only changes how Σ_k w_k · op_k(x) is computed
(fastadl/ops/dispatch.py). Stride-2 edges (DARTS' reduction cells) and PC-DARTS' partial channels
(fastadl/ops/partial_channels.py) are options of the same module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fastadl.ops.dispatch import check_backend, mixed_op
from fastadl.ops.partial_channels import pass_through, shuffle_merge, split_channels
from fastadl.ops.reference import OPS, STRIDES
from fastadl.space.primitives import PRIMITIVES


class MixedOp(nn.Module):
    """Σ_k weights[k] · op_k(x) over ``primitives``, C channels in and out.

    MixedOp(C), MixedOp(C, 2) (DARTS' ``MixedOp(C, stride)``), MixedOp(C, primitives=...),
    MixedOp(C, ("none", "sep_conv_3x3")) (the second positional argument may also name the
    primitives, stride 1).

    stride: 1, or 2 for DARTS' reduction edges (output ceil(H/2) × ceil(W/2); strided pools and
    first depthwise convs, skip_connect = factorized reduce; fastadl/ops/reference.py).
    partial_channels: K > 1 mixes only C/K channels, PC-DARTS style (K must divide C).
    affine: BatchNorm affine parameters (DARTS searches without; the fast backends cover
    affine=False and run the reference otherwise).
    The op modules live in ``self.ops`` (index k = primitives[k], `none` included as a
    parameter-free placeholder) whatever the backend, so state_dicts move between backends.
    backend: "auto" (a lone MixedOp: triton on CUDA tensors where the Triton check passed, fused
    otherwise; inside a SearchCell the cell-level path, fastadl/ops/dispatch.py::auto_summary),
    "fused", "triton" or "reference".
    recompute: the fused backend keeps only the edge's input for backward and recomputes the
    intermediates there (less memory, about one more forward of time).
    """

    def __init__(
        self,
        C: int,
        stride: int | Sequence[str] = 1,
        primitives: Sequence[str] | None = None,
        backend: str = "auto",
        affine: bool = False,
        recompute: bool = False,
        partial_channels: int = 1,
    ):
        super().__init__()
        if not isinstance(stride, int):  # MixedOp(C, primitives): this project's first spelling
            if primitives is not None:
                raise TypeError("MixedOp got primitives twice: as its second argument and by name")
            stride, primitives = 1, stride
        primitives = PRIMITIVES if primitives is None else primitives
        _check_args(C, stride, primitives, partial_channels)
        self.C = C
        self.stride = stride
        self.partial_channels = partial_channels
        self.primitives = tuple(primitives)
        self.backend = check_backend(backend)
        self.recompute = recompute
        C_mixed = C // partial_channels
        self.ops = nn.ModuleList(OPS[p](C_mixed, affine, stride) for p in self.primitives)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W); weights: (K,) with K = len(primitives) → (N, C, H', W'), H' = H at
        stride 1, ceil(H/2) at stride 2."""
        if weights.shape != (len(self.primitives),):
            raise ValueError(
                f"MixedOp expects weights of shape ({len(self.primitives)},), got {tuple(weights.shape)}"
            )
        if x.dim() != 4 or x.shape[1] != self.C:
            raise ValueError(
                f"MixedOp(C={self.C}) expects x: (N, {self.C}, H, W), got {tuple(x.shape)}"
            )
        K = self.partial_channels
        xm, rest = split_channels(x, K) if K > 1 else (x, None)
        y = mixed_op(
            xm, weights, self.ops, self.primitives, backend=self.backend,
            recompute=self.recompute, stride=self.stride,
        )  # fmt: skip
        return y if rest is None else shuffle_merge(y, pass_through(rest, self.stride), K)

    def extra_repr(self) -> str:
        extra = f", stride={self.stride}" if self.stride != 1 else ""
        if self.partial_channels != 1:
            extra += f", partial_channels={self.partial_channels}"
        if self.recompute:
            extra += ", recompute=True"
        return f"C={self.C}{extra}, backend={self.backend!r}"


def _check_args(C: int, stride: int, primitives: Sequence[str], K: int) -> None:
    """One clear ValueError naming the argument for what MixedOp cannot build."""
    if not isinstance(C, int) or C < 1:
        raise ValueError(f"MixedOp: C must be a positive channel count, got C={C!r}")
    if stride not in STRIDES:
        raise ValueError(
            f"MixedOp: stride must be 1 or 2 (DARTS' normal and reduction edges), got stride={stride!r}"
        )
    if isinstance(primitives, str):
        raise ValueError(
            f"MixedOp: primitives must be a sequence of names, got the string {primitives!r}"
        )
    unknown = [p for p in primitives if p not in OPS]
    if unknown:
        raise ValueError(f"unknown primitive(s) {unknown}; known: {tuple(OPS)}")
    if not isinstance(K, int) or K < 1 or C % K:
        raise ValueError(
            f"MixedOp: partial_channels must be a positive divisor of C={C}, got partial_channels={K!r}"
        )
    if stride == 2 and "skip_connect" in primitives and C // K < 2:
        raise ValueError(
            f"MixedOp: skip_connect at stride=2 (factorized reduce) needs at least 2 mixed channels, "
            f"got C={C} with partial_channels={K}"
        )
