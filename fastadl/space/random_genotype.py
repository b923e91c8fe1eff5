"""Random genotypes for the searched-vs-random study: uniform over the space the search decodes.

Cell space (docs/METHOD.md §4, what ``decode_cell`` can produce): each block keeps two
*distinct* inputs among its 2 + i candidates and one op excluding ``none`` for each. A block's
two branches are summed, so the pair is unordered: drawing the input pair uniformly among the
C(2 + i, 2) pairs and each op uniformly among the 7 ``DERIVED_PRIMITIVES`` is uniform over
distinct cells. Path space: every level sequence the trellis allows (trellis.count_paths), drawn
backwards from the per-node path counts so that each of the count_paths(L) paths is equally
likely (a forward random walk is not uniform: it favours nodes with few continuations).
"""

from __future__ import annotations

import random

from fastadl.space.genotype import Genotype
from fastadl.space.primitives import DERIVED_PRIMITIVES
from fastadl.space.trellis import incoming, paths_into


def random_cell(rng: random.Random, blocks: int) -> tuple[tuple[str, int], ...]:
    """2·B (op, input) pairs, uniform over the decodable cells with ``blocks`` blocks."""
    cell: list[tuple[str, int]] = []
    for b in range(blocks):
        inputs = sorted(rng.sample(range(2 + b), 2))
        cell += [(rng.choice(DERIVED_PRIMITIVES), i) for i in inputs]
    return tuple(cell)


def random_path(rng: random.Random, layers: int) -> tuple[int, ...]:
    """A level sequence for layers 1..L, uniform over all count_paths(L) valid paths."""
    counts = paths_into(layers)

    def pick(weights: dict[int, int]) -> int:
        levels = sorted(weights)
        return rng.choices(levels, weights=[weights[s] for s in levels])[0]

    # P(path) = Π (paths into the chosen predecessor / paths into the node) = 1 / count_paths.
    level = pick(counts[layers])
    path = [level]
    for layer in range(layers, 1, -1):
        sources = {s: counts[layer - 1][s] for s, _ in incoming(layer, level)}
        level = pick({s: n for s, n in sources.items() if n})
        path.append(level)
    return tuple(reversed(path))


def random_genotype(
    rng: random.Random, blocks: int, layers: int, filter_multiplier: int
) -> Genotype:
    """A uniform random cell and an independent uniform random path."""
    return Genotype(
        cell=random_cell(rng, blocks),
        path=random_path(rng, layers),
        filter_multiplier=filter_multiplier,
        block_multiplier=blocks,
        layers=layers,
    )
