"""CostTables of made-up numbers with every piece a genotype of up to 4 levels can use."""

from __future__ import annotations

import random

from fastadl.budget.table import STEM_HALF, STEM_QUARTER, CostTable
from fastadl.space.primitives import DERIVED_PRIMITIVES
from fastadl.space.trellis import NUM_LEVELS


def synthetic_table(seed: int, unit: str = "ms") -> CostTable:
    """Positive costs drawn from ``seed``; every (a, b, c), (level, stride, op), (low, last)."""
    rng = random.Random(seed)
    levels = range(NUM_LEVELS)
    sources: list = [STEM_HALF, STEM_QUARTER, *levels]
    link = {(a, b, c): rng.uniform(0.1, 2) for a in sources for b in sources for c in levels}
    op = {
        (c, s, p): rng.uniform(0.1, 2) for c in levels for s in (1, 2) for p in DERIVED_PRIMITIVES
    }
    head = {(low, last): rng.uniform(1, 5) for low in levels for last in levels}
    return CostTable(unit=unit, fixed=rng.uniform(1, 3), link=link, op=op, head=head)
