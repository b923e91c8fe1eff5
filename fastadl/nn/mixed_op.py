"""MixedOp: the DARTS-style continuous relaxation of one edge, ``forward(x, weights)``.

A drop-in for DARTS-style code (``from fastadl import MixedOp``): same constructor and forward
signature as DARTS' MixedOp, the op modules in ``self.ops`` in ``primitives`` order, and a
``backend`` that only changes how Σ_k w_k · op_k(x) is computed (fastadl/ops/mixed.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fastadl.ops.mixed import check_backend, mixed_op
from fastadl.ops.primitives import PRIMITIVES
from fastadl.ops.reference import OPS


class MixedOp(nn.Module):
    """Σ_k weights[k] · op_k(x) over ``primitives`` (stride 1, C channels in and out).

    ``MixedOp(C, 1)`` (DARTS' ``MixedOp(C, stride)``) means the default primitives.

    The op modules live in ``self.ops`` (index k = primitives[k], `none` included as a
    parameter-free placeholder) whatever the backend, so state_dicts move between backends.
    backend: "auto" (triton on CUDA tensors, fused otherwise), "fused", "triton" or "reference".
    recompute: the fused backend keeps only the edge's input for backward and recomputes the
    intermediates there (less memory, about one more forward of time).
    """

    def __init__(
        self,
        C: int,
        primitives: Sequence[str] = PRIMITIVES,
        backend: str = "auto",
        affine: bool = False,
        recompute: bool = False,
    ):
        super().__init__()
        if isinstance(primitives, int):  # DARTS' MixedOp(C, stride): only stride 1 exists here
            if primitives != 1:
                raise ValueError(
                    f"MixedOp computes stride-1 edges only (got stride {primitives}); Auto-DeepLab "
                    "changes resolution outside the cell"
                )
            primitives = PRIMITIVES
        unknown = [p for p in primitives if p not in OPS]
        if unknown:
            raise ValueError(f"unknown primitive(s) {unknown}; known: {tuple(OPS)}")
        self.C = C
        self.primitives = tuple(primitives)
        self.backend = check_backend(backend)
        self.recompute = recompute
        self.ops = nn.ModuleList(OPS[p](C, affine) for p in self.primitives)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W); weights: (K,) with K = len(primitives) → (N, C, H, W)."""
        if weights.shape != (len(self.primitives),):
            raise ValueError(
                f"MixedOp expects weights of shape ({len(self.primitives)},), got {tuple(weights.shape)}"
            )
        return mixed_op(
            x, weights, self.ops, self.primitives, backend=self.backend, recompute=self.recompute
        )

    def extra_repr(self) -> str:
        rec = ", recompute=True" if self.recompute else ""
        return f"C={self.C}, backend={self.backend!r}{rec}"
