"""The expected cost against enumeration of every path and cell, and its gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fastadl.budget.expected import dense_cost, edge_weights, expected_cost
from fastadl.budget.table import genotype_cost
from fastadl.space.genotype import Genotype, path_log_prob
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import count_paths, incoming, levels_at, normalize_betas
from tests.budget.synthetic import synthetic_table

# Fewer ops than the search's 8 keep the enumeration small (2 real ops: 48 cells for B = 2).
FEW = ("none", "skip_connect", "sep_conv_5x5")


def all_paths(layers: int) -> list[tuple[int, ...]]:
    paths = [()]
    for layer in range(1, layers + 1):
        paths = [
            (*p, t)
            for p in paths
            for t in levels_at(layer)
            if any(s == (p[-1] if p else 0) for s, _ in incoming(layer, t))
        ]
    assert len(paths) == count_paths(layers)
    return paths


def all_cells(probs: torch.Tensor, primitives, blocks: int):
    """(cell, probability) for every cell decoding can produce, by the docstring's definition:
    per block a pair {i, j} ∝ s_i s_j with s = 1 - P(none), each op ∝ its softmax weight."""
    real = [k for k, p in enumerate(primitives) if p != "none"]
    probs = probs.tolist()
    strength = [1 - row[primitives.index("none")] for row in probs]
    per_block = []
    for b in range(blocks):
        rows = list(range(b * (b + 3) // 2, b * (b + 3) // 2 + 2 + b))
        pairs = list(itertools.combinations(range(2 + b), 2))
        z = sum(strength[rows[i]] * strength[rows[j]] for i, j in pairs)
        options = []
        for i, j in pairs:
            for ki, kj in itertools.product(real, real):
                p = probs[rows[i]][ki] * probs[rows[j]][kj] / z  # s_i s_j/z · (p/s_i)(p/s_j)
                options.append((((primitives[ki], i), (primitives[kj], j)), p))
        per_block.append(options)
    for combo in itertools.product(*per_block):
        yield tuple(x for branches, _ in combo for x in branches), math.prod(p for _, p in combo)


@pytest.mark.parametrize(
    ("layers", "blocks", "primitives"), [(4, 2, FEW), (5, 1, PRIMITIVES)], ids=["L4B2", "L5B1"]
)
def test_expected_cost_equals_enumeration(layers, blocks, primitives):
    gen = torch.Generator().manual_seed(layers)
    edges = sum(2 + b for b in range(blocks))
    alphas = torch.randn(edges, len(primitives), generator=gen, dtype=torch.float64)
    betas = torch.randn(layers, 4, 3, generator=gen, dtype=torch.float64)
    table = synthetic_table(seed=layers)
    nb = normalize_betas(betas)
    probs = alphas.softmax(-1)
    cells = list(all_cells(probs, primitives, blocks))
    total, mass = 0.0, 0.0
    for path in all_paths(layers):
        p_path = math.exp(path_log_prob(nb, path))
        for cell, p_cell in cells:
            g = Genotype(cell=cell, path=path, block_multiplier=blocks, layers=layers)
            total += p_path * p_cell * genotype_cost(table, g)
            mass += p_path * p_cell
    assert mass == pytest.approx(1.0, abs=1e-12)
    got = expected_cost(table, alphas, betas, primitives)
    assert got.dtype == torch.float64 and got.dim() == 0
    torch.testing.assert_close(got, torch.tensor(total, dtype=torch.float64))


def test_edge_weights_keep_two_branches_per_block():
    alphas = torch.randn(9, len(PRIMITIVES), dtype=torch.float64)  # B = 3
    rows = edge_weights(alphas).sum(-1)
    for start, stop in ((0, 2), (2, 5), (5, 9)):
        torch.testing.assert_close(rows[start:stop].sum(), torch.tensor(2.0, dtype=torch.float64))


def test_expected_cost_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(0)
    alphas = torch.randn(5, len(PRIMITIVES), generator=gen, dtype=torch.float64)
    betas = torch.randn(4, 4, 3, generator=gen, dtype=torch.float64)
    table = dense_cost(synthetic_table(seed=1), layers=4)
    torch.autograd.gradcheck(
        lambda a, b: expected_cost(table, a, b),
        (alphas.requires_grad_(), betas.requires_grad_()),
        fast_mode=True,  # random directions instead of all 88 coordinates: seconds, not tens
    )


def test_missing_piece_is_named():
    table = synthetic_table(seed=2)
    del table.head[(0, 1)]
    alphas, betas = torch.zeros(2, len(PRIMITIVES)), torch.zeros(4, 4, 3)
    with pytest.raises(KeyError, match=r"ms cost table has no entry for \(0, 1\)"):
        expected_cost(table, alphas, betas)
