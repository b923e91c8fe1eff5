"""Search methods beyond the paper, each behind a flag: prior-corrected path decoding,
β-DARTS' beta-decay on α, and the warm-up as a fraction of the search."""

import dataclasses

import pytest
import torch

from fastadl.runtime.config import ConfigError
from fastadl.search.arch_stats import alpha_decay
from fastadl.search.config import resolve
from fastadl.space.genotype import viterbi
from fastadl.space.path_prior import prior_corrected
from tests.search.test_collapse_guards import micro_task, one_arch_step

pytestmark = pytest.mark.usefixtures("one_thread")


def test_prior_corrected_decoding_changes_the_path_only(tmp_path):
    plain = micro_task(tmp_path / "a", layers=3)
    corrected = micro_task(tmp_path / "b", layers=3, path_decoding="prior-corrected")
    for task in (plain, corrected):
        with torch.no_grad():
            task.model.betas.zero_()
            task.model.betas[1, 0, 2] = 0.1  # β moved towards layer 2 at level 1 ...
            task.model.betas[2, 1, 1] = 0.1  # ... and staying there
    a, b = plain.decode(), corrected.decode()
    assert a.path == (0, 0, 0) and b.path == (0, 1, 1)
    assert b.cell == a.cell
    assert b.path == viterbi(prior_corrected(corrected.model.normalized_betas()))
    assert corrected.validate(1)["genotype"]["path"] == [0, 1, 1]


def test_alpha_decay_shrinks_the_leading_logits_and_leaves_beta_alone():
    a0, b0 = one_arch_step(alpha_decay, 0.0, spread=2.0)
    a1, b1 = one_arch_step(alpha_decay, 100.0, spread=2.0)
    assert alpha_decay(a1) < alpha_decay(a0)
    # the term's gradient is positive everywhere: it only ever pulls logits down
    assert (a1 <= a0).all() and (a1 < a0).any()
    torch.testing.assert_close(b1, b0)
    # its gradient is softmax(α) / E (the derivation in arch_stats.alpha_decay)
    alphas = torch.randn(5, 8, requires_grad=True)
    alpha_decay(alphas).backward()
    torch.testing.assert_close(alphas.grad, alphas.detach().softmax(-1) / 5)


def test_search_wires_the_regularisers(tmp_path):
    assert micro_task(tmp_path / "a").architect.regularizer is None
    task = micro_task(tmp_path / "b", alpha_decay_weight=2.0, arch_entropy_weight=0.5)
    alphas = task.model.alphas
    from fastadl.search.arch_stats import alpha_entropy

    expected = 2.0 * alpha_decay(alphas) + 0.5 * alpha_entropy(alphas)
    torch.testing.assert_close(task.architect.regularizer(), expected)


def test_warm_up_as_a_fraction_of_the_search():
    cfg = resolve("tiny", {"arch_start_fraction": 0.5})
    assert cfg.first_arch_epoch == 3  # half of 6 epochs; the paper: half of 40
    assert resolve("tiny", {}).first_arch_epoch == resolve("tiny", {}).arch_start_epoch == 2
    assert resolve("tiny", {"arch_start_fraction": 0.0}).first_arch_epoch == 0
    with pytest.raises(ConfigError, match="arch_start_fraction"):
        resolve("tiny", {"arch_start_fraction": 1.5})


def test_warm_up_fraction_decides_when_alpha_moves(tmp_path):
    task = micro_task(tmp_path, epochs=4, arch_start_fraction=0.75)
    task.batches(2, 0)
    assert not task.search_arch
    task.batches(3, 0)
    assert task.search_arch
    assert dataclasses.asdict(task.cfg)["arch_start_fraction"] == 0.75
