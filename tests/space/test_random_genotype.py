"""Random genotypes of the searched-vs-random study: valid, uniform over paths and cells."""

import collections
import itertools
import math
import random

import pytest

from fastadl.space.primitives import DERIVED_PRIMITIVES
from fastadl.space.random_genotype import random_cell, random_genotype, random_path
from fastadl.space.trellis import count_paths, paths_into
from tests.space.test_genotype import all_valid_paths


def chi_square(counts: collections.Counter, outcomes: list, draws: int) -> float:
    expected = draws / len(outcomes)
    return sum((counts[o] - expected) ** 2 / expected for o in outcomes)


def chi_square_bound(dof: int) -> float:
    """Wilson-Hilferty 99.99 % quantile of chi-square(dof): a fixed-seed draw far above it
    means the sampler is not uniform (a correct sampler passes with this seed, always)."""
    z = 3.719
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def test_paths_into_counts_every_path():
    for L in range(1, 8):
        per_node = paths_into(L)
        assert sum(per_node[-1].values()) == count_paths(L)
        ends = collections.Counter(p[-1] for p in all_valid_paths(L))
        assert dict(ends) == per_node[-1]


@pytest.mark.parametrize("layers", [4, 6])
def test_random_paths_are_valid_and_uniform(layers):
    paths = list(all_valid_paths(layers))
    assert len(paths) == count_paths(layers)
    rng = random.Random(0)
    draws = 200 * len(paths)
    counts = collections.Counter(random_path(rng, layers) for _ in range(draws))
    assert set(counts) == set(paths)  # every valid path, nothing else
    assert chi_square(counts, paths, draws) < chi_square_bound(len(paths) - 1)


def test_a_forward_random_walk_would_fail_the_uniformity_check():
    """The check above can fail: a walk choosing each next level uniformly is not uniform."""
    from fastadl.space.trellis import levels_at

    def walk(rng, layers):
        path, level = [], 0
        for layer in range(1, layers + 1):
            level = rng.choice([t for t in levels_at(layer) if abs(t - level) <= 1])
            path.append(level)
        return tuple(path)

    paths = list(all_valid_paths(4))
    rng = random.Random(0)
    draws = 200 * len(paths)
    counts = collections.Counter(walk(rng, 4) for _ in range(draws))
    assert chi_square(counts, paths, draws) > chi_square_bound(len(paths) - 1)


def test_random_cells_are_uniform_per_block():
    rng = random.Random(1)
    blocks, draws = 3, 6000
    cells = [random_cell(rng, blocks) for _ in range(draws)]
    for b in range(blocks):
        pairs = list(itertools.combinations(range(2 + b), 2))
        counts = collections.Counter((c[2 * b][1], c[2 * b + 1][1]) for c in cells)
        assert set(counts) == set(pairs)  # two distinct inputs, in increasing order
        if len(pairs) > 1:  # block 1 has the one pair (0, 1)
            assert chi_square(counts, pairs, draws) < chi_square_bound(len(pairs) - 1)
    ops = collections.Counter(op for c in cells for op, _ in c)
    assert set(ops) == set(DERIVED_PRIMITIVES)  # never `none`
    n = draws * 2 * blocks
    assert chi_square(ops, list(DERIVED_PRIMITIVES), n) < chi_square_bound(6)


def test_random_genotypes_are_valid_and_reproducible():
    a = [random_genotype(random.Random(7), 3, 4, 4) for _ in range(2)]
    assert a[0] == a[1]  # same seed, same genotype
    rng = random.Random(7)
    many = [random_genotype(rng, 5, 12, 8) for _ in range(50)]  # Genotype() validates each
    assert len({g.path for g in many}) > 40 and all(g.layers == 12 for g in many)
