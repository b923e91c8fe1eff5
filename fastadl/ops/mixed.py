"""The functional mixed op: Σ_k w_k · op_k(x), dispatched to a backend.

Backends share one semantics (shared/ARCHITECTURE.md "Mixed-op backends"); ``reference`` is
the literal sum over the reference op modules and is never removed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

BACKENDS: tuple[str, ...] = ("reference",)


def reference_mixed_op(
    x: torch.Tensor, weights: torch.Tensor, ops: Sequence[nn.Module], primitives: Sequence[str]
) -> torch.Tensor:
    """x: (N, C, H, W); weights: (K,) mixing weights in ``primitives`` order → (N, C, H, W).

    `none` is skipped: its weight only matters through the softmax that produced ``weights``.
    """
    out = None
    for w, op, name in zip(weights, ops, primitives, strict=True):
        if name == "none":
            continue
        y = w * op(x)
        out = y if out is None else out + y
    if out is None:  # every candidate is `none`: the edge contributes nothing
        out = x.new_zeros(x.shape)
    return out


def mixed_op(
    x: torch.Tensor,
    weights: torch.Tensor,
    ops: Sequence[nn.Module],
    primitives: Sequence[str],
    backend: str = "reference",
) -> torch.Tensor:
    """Dispatch the mixed op to ``backend`` (one of BACKENDS). Shapes as reference_mixed_op."""
    if backend == "reference":
        return reference_mixed_op(x, weights, ops, primitives)
    raise ValueError(f"unknown mixed-op backend {backend!r}; choose one of {BACKENDS}")
