"""Scheduled drop-path for the derived network (docs/METHOD.md §5, optional there).

Follows the TF model (nas_cell.py ``_apply_drop_path``): each non-identity branch of a block is
zeroed per sample with probability p and rescaled by 1/(1-p) otherwise, where

    p = drop_path_prob · (cell_index + 1) / num_cells · progress

i.e. deeper cells drop more, and the probability grows linearly with training progress
(``progress`` in [0, 1], set by the training loop, e.g. iteration / total iterations).
Off in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``p``; scale the kept ones by 1/(1-p)."""
    if not training or p <= 0.0:
        return x
    if p >= 1.0:
        raise ValueError(f"drop-path probability must be < 1, got {p}")
    keep = 1.0 - p
    mask = torch.empty(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype)
    return x * mask.bernoulli_(keep).div_(keep)


class DropPath(nn.Module):
    """drop_path with a settable probability ``p`` (the owning network schedules it)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}"
