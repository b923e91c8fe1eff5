"""MixedOp: the DARTS-style continuous relaxation of one edge, ``forward(x, weights)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fastadl.ops.mixed import mixed_op
from fastadl.ops.primitives import PRIMITIVES
from fastadl.ops.reference import OPS


class MixedOp(nn.Module):
    """Σ_k weights[k] · op_k(x) over ``primitives`` (stride 1, C channels in and out).

    The op modules live in ``self.ops`` (index k = primitives[k], `none` included as a
    parameter-free placeholder) whatever the backend, so state_dicts move between backends.
    """

    def __init__(
        self,
        C: int,
        primitives: Sequence[str] = PRIMITIVES,
        backend: str = "reference",
        affine: bool = False,
    ):
        super().__init__()
        unknown = [p for p in primitives if p not in OPS]
        if unknown:
            raise ValueError(f"unknown primitive(s) {unknown}; known: {tuple(OPS)}")
        self.C = C
        self.primitives = tuple(primitives)
        self.backend = backend
        self.ops = nn.ModuleList(OPS[p](C, affine) for p in self.primitives)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W); weights: (K,) with K = len(primitives) → (N, C, H, W)."""
        if weights.shape != (len(self.primitives),):
            raise ValueError(
                f"MixedOp expects weights of shape ({len(self.primitives)},), got {tuple(weights.shape)}"
            )
        return mixed_op(x, weights, self.ops, self.primitives, backend=self.backend)

    def extra_repr(self) -> str:
        return f"C={self.C}, backend={self.backend!r}"
