"""The derived (retrained) cell: docs/METHOD.md §5, TF-model mechanics (nas_cell.py).

For a cell at level s with C = F·2^level channels per block:
- the network hands it H^{l-1} already upsampled (bilinear, to the exact size of its level) when
  the path goes up; here H^{l-2} is bilinearly resized to H^{l-1}'s size when they differ;
- H^{l-1} → ReLU-1×1-BN to C always; H^{l-2} → ReLU-1×1-BN only if its channels differ from C;
- when the path goes down (stride 2), the ops applied to the two cell inputs (indices 0, 1) use
  stride 2; ops on other blocks' outputs (already at the reduced size) never do;
- block i = op_a(input_a) + op_b(input_b); output = concat of the B block outputs (B·C).
Drop-path (drop_path.py) is applied to every branch except ``skip_connect`` (TF drops every op
but its identity op 'none', which is also what our strided skip is built from).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastadl.nn.derived.drop_path import DropPath
from fastadl.nn.derived.ops import ReLUConvBN, make_op


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize to an explicit size (a no-op if already there).

    align_corners=True (**decision**, as TF's deeplab ``resize_bilinear``): a stride-2 conv with
    'same' padding centres output pixel i on input pixel 2i, which is exactly the align_corners
    grid for the odd (4k+1) crops the paper uses.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class DerivedCell(nn.Module):
    """One cell of the final network.

    cell: 2·B (op, input) pairs (Genotype.cell; input 0 = H^{l-2}, 1 = H^{l-1}, 2.. = blocks);
    C_prev_prev, C_prev: channels of H^{l-2}, H^{l-1}; C: channels per block; stride: 2 if the
    path goes down into this cell, else 1.
    """

    def __init__(
        self,
        cell: Sequence[tuple[str, int]],
        C_prev_prev: int,
        C_prev: int,
        C: int,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if len(cell) % 2:
            raise ValueError("cell must hold an even number of (op, input) pairs")
        self.C = C
        self.stride = stride
        self.blocks = len(cell) // 2
        self.inputs = tuple(int(i) for _, i in cell)
        self.op_names = tuple(op for op, _ in cell)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1)
        self.preprocess0 = nn.Identity() if C_prev_prev == C else ReLUConvBN(C_prev_prev, C, 1)
        self.ops = nn.ModuleList(make_op(op, C, stride if idx < 2 else 1) for op, idx in cell)
        self.drop_paths = nn.ModuleList(
            nn.Identity() if op == "skip_connect" else DropPath() for op in self.op_names
        )

    @property
    def out_channels(self) -> int:
        return self.blocks * self.C

    def set_drop_path(self, p: float) -> None:
        for dp in self.drop_paths:
            if isinstance(dp, DropPath):
                dp.p = p

    def preprocess(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cell's two inputs at C channels and s1's size (s0 resized first)."""
        return self.preprocess0(resize(s0, s1.shape[-2:])), self.preprocess1(s1)

    def branch(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Branch k: its op, then its drop-path."""
        return self.drop_paths[k](self.ops[k](x))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """s0 = H^{l-2} (any size), s1 = H^{l-1} (already at this cell's input size)."""
        states = list(self.preprocess(s0, s1))
        for b in range(self.blocks):
            ys = [self.branch(k, states[self.inputs[k]]) for k in (2 * b, 2 * b + 1)]
            states.append(join_block(ys))
        return join_cell(states[2:])


def join_block(branches: Sequence[torch.Tensor]) -> torch.Tensor:
    """A block's output: the sum of its two branches."""
    return branches[0] + branches[1]


def join_cell(blocks: Sequence[torch.Tensor]) -> torch.Tensor:
    """A cell's output: its blocks' outputs concatenated along channels (B·C)."""
    return torch.cat(list(blocks), dim=1)
