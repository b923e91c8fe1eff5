"""The derived network's cost, split into the pieces a genotype chooses between.

A derived AutoDeepLab (fastadl/nn/derived/autodeeplab.py) at one input size costs

    fixed + Σ_i link[(a_i, b_i, c_i)] + Σ_i Σ_k op[(c_i, stride_ik, op_ik)] + head[(low, last)]

- ``fixed``: the stem and anything every genotype runs.
- cell i at level c_i, whose inputs H^{l-2}, H^{l-1} come from positions at levels a_i, b_i:
  ``link`` is the cell's cost besides its ops (resizing either input, the preprocessing 1×1
  convs, the concatenation). The stem's two outputs are positions too: STEM_HALF (its /2 tap,
  the first cell's H^{l-2}) and STEM_QUARTER (its /4 output, H^{l-1} of the first cell and
  H^{l-2} of the second); cell outputs are named by their level 0..3.
- ``op[(level, stride, primitive)]``: one branch of a cell at ``level`` (C = F·2^level
  channels). stride is 2 for a branch reading one of the cell's two inputs when the path goes
  down into the cell (its input is at level - 1), else 1.
- ``head[(low, last)]``: ASPP on the last cell (at level ``last``), the decoder with the
  low-level features of the third cell (at level ``low``), the classifier and the final resize.

One table holds one unit: milliseconds (measured), multiply-adds (×1e9) or parameters (×1e6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fastadl.space.genotype import Genotype

STEM_HALF = "stem/2"
STEM_QUARTER = "stem/4"

Position = int | str  # a cell output's level 0..3, or STEM_HALF / STEM_QUARTER


@dataclass(frozen=True)
class CostTable:
    """Per-piece costs of the derived network at one input size, in one ``unit``."""

    unit: str  # "ms", "GMACs" or "Mparams"
    fixed: float
    link: Mapping[tuple[Position, Position, int], float]
    op: Mapping[tuple[int, int, str], float]
    head: Mapping[tuple[int, int], float]
    # where the figures hold: device, torch version, input size, dtype, threads, model sizes
    context: Mapping[str, object] = field(default_factory=dict)


def cell_positions(path: Sequence[int]) -> list[tuple[Position, Position, int]]:
    """(a_i, b_i, c_i) of every cell of ``path``: where its two inputs come from, its level."""
    positions: list[Position] = [STEM_HALF, STEM_QUARTER, *path]
    return [(positions[i], positions[i + 1], level) for i, level in enumerate(path)]


def going_down(b: Position, c: int) -> bool:
    """Whether the path goes down into a cell at level c from H^{l-1} at position b (stride 2);
    the stem's /4 output is at level 0."""
    return c == (0 if b == STEM_QUARTER else b) + 1


def genotype_cost(table: CostTable, genotype: Genotype) -> float:
    """The derived network's cost for ``genotype`` (the sum in the module docstring)."""
    total = table.fixed
    for a, b, c in cell_positions(genotype.path):
        total += table.link[(a, b, c)]
        down = going_down(b, c)
        for op, source in genotype.cell:
            total += table.op[(c, 2 if down and source < 2 else 1, op)]
    return total + table.head[(genotype.path[2], genotype.path[-1])]
