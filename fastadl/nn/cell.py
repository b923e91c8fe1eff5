"""The search cell: B blocks over 2 + i candidate inputs each, all edges mixed ops."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fastadl.cell_topology import edge_offset, num_edges
from fastadl.nn.mixed_op import MixedOp
from fastadl.ops.primitives import PRIMITIVES


class SearchCell(nn.Module):
    """H_i = Σ_{j<i} MixedOp_{j→i}(H_j; softmax(α)_{j→i}); output = concat of the B blocks.

    Inputs are already preprocessed to C channels (the trellis node owns the transitions);
    edges are stored in α's row order (shared/AUTO_DEEPLAB.md §1).
    """

    def __init__(
        self,
        C: int,
        blocks: int = 5,
        primitives: Sequence[str] = PRIMITIVES,
        backend: str = "auto",
        recompute: bool = False,
    ):
        super().__init__()
        self.C = C
        self.blocks = blocks
        self.edges = nn.ModuleList(
            MixedOp(C, primitives, backend=backend, recompute=recompute)
            for _ in range(num_edges(blocks))
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """s0 = H^{l-2}, s1 = H^{l-1}: (N, C, H, W); weights: (E, K) → (N, B·C, H, W)."""
        states = [s0, s1]
        for b in range(self.blocks):
            off = edge_offset(b)
            h = self.edges[off](states[0], weights[off])
            for j in range(1, len(states)):
                h = h + self.edges[off + j](states[j], weights[off + j])
            states.append(h)
        return torch.cat(states[2:], dim=1)
