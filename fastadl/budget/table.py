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

from collections.abc import Mapping
from dataclasses import dataclass, field

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
