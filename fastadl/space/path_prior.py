"""The path an untrained β decodes, decoding with that prior taken out, and paths by depth.

Eq. 7 normalises β over each source node's *outgoing* moves: a level-0 node has two (same,
coarser), levels 1-2 three, level 3 two. With β at its initial value (≈ 0) every move of a
node is equally likely, so a path's prior probability is Π 1 / (moves out of each node it
leaves): paths that stay at level 0 leave only two-way nodes and are the most probable. Viterbi
over an untrained β therefore decodes 0 0 … 0 (or, through the 1e-3 noise, 0 … 0 1) before any
search. ``prior_corrected`` divides each move's probability by its prior, so the decoded path
is the one β *moved towards* during the search (a likelihood ratio against no search).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from fastadl.space.genotype import viterbi
from fastadl.space.trellis import NUM_LEVELS, levels_at, normalize_betas, transition_mask


def prior_betas(layers: int) -> torch.Tensor:
    """(L, 4, 3) normalised β of an untrained search (β = 0): 1 / (moves out of the node)."""
    return normalize_betas(torch.zeros(layers, NUM_LEVELS, 3, dtype=torch.float64))


def prior_path(layers: int) -> tuple[int, ...]:
    """The path Viterbi decodes from an untrained β (all levels 0: see the module docstring)."""
    return viterbi(prior_betas(layers))


def prior_corrected(normalized_betas: torch.Tensor) -> torch.Tensor:
    """(L, 4, 3) → (L, 4, 3): each allowed move's probability over its prior (0 elsewhere).

    Feed to ``viterbi``: it then maximises Σ log(β̂ / β̂₀), the path's likelihood ratio of the
    searched β against an untrained one.
    """
    L = normalized_betas.shape[0]
    mask = transition_mask(L).to(normalized_betas.device)
    prior = prior_betas(L).to(normalized_betas.device, normalized_betas.dtype)
    ratio = normalized_betas / torch.where(mask, prior, torch.ones_like(prior))
    return torch.where(mask, ratio, torch.zeros_like(ratio))


def all_paths(layers: int) -> Iterator[tuple[int, ...]]:
    """Every valid level sequence of layers 1..L (trellis.count_paths(L) of them), in
    lexicographic order."""

    def extend(prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        if len(prefix) == layers:
            yield prefix
            return
        last = prefix[-1] if prefix else 0
        for level in levels_at(len(prefix) + 1):
            if abs(level - last) <= 1:
                yield from extend((*prefix, level))

    yield from extend(())
