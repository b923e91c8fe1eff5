"""The search cell: B blocks over 2 + i candidate inputs each, all edges mixed ops.

With the edges' backend ``fused`` or ``auto`` the cell runs as one autograd node on the
cell-level fast path (fastadl/ops/cell/fast.py): every edge that reads the same state computed
together, several incoming paths stacked. Otherwise (``reference``, ``triton``, or anything the
fast path does not cover) the edges run one by one; both compute the same function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fastadl.nn.search.mixed_op import MixedOp
from fastadl.ops.cell.fast import fast_cell
from fastadl.space.cell_topology import edge_offset, num_edges
from fastadl.space.primitives import PRIMITIVES


class SearchCell(nn.Module):
    """H_i = Σ_{j<i} MixedOp_{j→i}(H_j; softmax(α)_{j→i}); output = concat of the B blocks.

    Inputs are already preprocessed to C channels (the trellis node owns the transitions);
    edges are stored in α's row order (docs/METHOD.md §1).
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
        out = fast_cell(self, s0, [s1], weights, None)
        return self.forward_edges(s0, s1, weights) if out is None else out

    def forward_paths(
        self,
        s0: torch.Tensor,
        s1s: Sequence[torch.Tensor],
        weights: torch.Tensor,
        betas: torch.Tensor,
    ) -> torch.Tensor:
        """Σ_p betas[p] · cell(s0, s1s[p], weights): one trellis node's update (paper Eq. 6).

        s0, s1s[p]: (N, C, H, W); betas: (P,) → (N, B·C, H, W). Running statistics end where P
        evaluations in path order would leave them.
        """
        out = fast_cell(self, s0, s1s, weights, betas)
        if out is not None:
            return out
        for p, s1 in enumerate(s1s):
            y = betas[p] * self.forward_edges(s0, s1, weights)
            out = y if out is None else out + y
        return out

    def forward_edges(
        self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """The cell edge by edge (each MixedOp with its own backend): the literal definition."""
        states = [s0, s1]
        for b in range(self.blocks):
            off = edge_offset(b)
            h = self.edges[off](states[0], weights[off])
            for j in range(1, len(states)):
                h = h + self.edges[off + j](states[j], weights[off + j])
            states.append(h)
        return torch.cat(states[2:], dim=1)
