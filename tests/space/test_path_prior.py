"""The path an untrained β decodes, prior-corrected decoding, and the enumeration of paths."""

import math

import pytest
import torch

from fastadl.space.genotype import path_log_prob, viterbi
from fastadl.space.path_prior import all_paths, prior_betas, prior_corrected, prior_path
from fastadl.space.trellis import count_paths, normalize_betas, transition_mask


@pytest.mark.parametrize("layers", [1, 2, 4, 12])
def test_untrained_beta_decodes_the_all_level_zero_path(layers):
    assert prior_path(layers) == (0,) * layers
    # SuperNet's 1e-3 initial noise stays in the prior's neighbourhood: depth at most 1
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        noisy = viterbi(normalize_betas(1e-3 * torch.randn(layers, 4, 3, generator=g)))
        assert sum(noisy) <= 1


def test_prior_probability_of_a_path_is_one_over_its_branching():
    betas = prior_betas(4)
    # 0 0 0 0 leaves four two-way level-0 nodes (the stem and layers 1-3); 0 1 1 1 leaves two
    # level-0 nodes and two three-way level-1 nodes
    assert math.exp(path_log_prob(betas, (0, 0, 0, 0))) == pytest.approx(1 / 16)
    assert math.exp(path_log_prob(betas, (0, 1, 1, 1))) == pytest.approx(1 / 4 / 9)
    total = sum(math.exp(path_log_prob(betas, p)) for p in all_paths(4))
    assert total == pytest.approx(1.0)


def test_all_paths_enumerates_every_valid_path_once():
    for layers in (1, 3, 5, 7):
        paths = list(all_paths(layers))
        assert len(paths) == len(set(paths)) == count_paths(layers)
        assert all(math.isfinite(path_log_prob(prior_betas(layers), p)) for p in paths)


def test_prior_corrected_decoding_finds_where_beta_moved():
    # β moved towards 0 1 1 1 by +0.3 on each of its moves: not enough to beat the prior's
    # preference for level 0 under plain Viterbi, but the only path β moved towards.
    betas = torch.zeros(4, 4, 3)
    prev = 0
    for layer, level in enumerate((0, 1, 1, 1)):
        betas[layer, prev, level - prev + 1] += 0.3
        prev = level
    moved = normalize_betas(betas)
    assert viterbi(moved) == (0, 0, 0, 0)
    assert viterbi(prior_corrected(moved)) == (0, 1, 1, 1)
    ratio = prior_corrected(prior_betas(4))
    mask = transition_mask(4)
    torch.testing.assert_close(ratio[mask], torch.ones(int(mask.sum()), dtype=ratio.dtype))
    assert (ratio[~mask] == 0).all()
