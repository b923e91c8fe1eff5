"""Collapse guards (off by default) and the α/β summaries the search records per epoch."""

import dataclasses
import json
import math

import pytest
import torch

from fastadl.nn import SuperNet
from fastadl.runtime.precision import Precision
from fastadl.search.arch_stats import alpha_entropy, alpha_summary, beta_summary, op_histogram
from fastadl.search.architect import Architect
from fastadl.search.searcher import Search, run_search
from fastadl.space.cell_topology import edge_index, num_edges
from fastadl.space.genotype import decode_cell
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import normalize_betas
from tests.search.test_search import MICRO

pytestmark = pytest.mark.usefixtures("one_thread")

SKIP, SEP3, NONE = (PRIMITIVES.index(p) for p in ("skip_connect", "sep_conv_3x3", "none"))


def skip_heavy_alphas(blocks: int = 3) -> torch.Tensor:
    """Every edge prefers skip_connect, with strength growing with the row; sep_conv_3x3 second."""
    a = torch.zeros(num_edges(blocks), len(PRIMITIVES))
    for row in range(a.shape[0]):
        a[row, SKIP] = 2.0 + 0.1 * row
        a[row, SEP3] = 1.0
    return a


def test_max_skips_keeps_the_strongest_skips_only():
    alphas = skip_heavy_alphas()
    plain = decode_cell(alphas)
    assert all(op == "skip_connect" for op, _ in plain)
    assert decode_cell(alphas, max_skips=None) == plain == decode_cell(alphas, max_skips=6)
    capped = decode_cell(alphas, max_skips=2)
    skips = [(k, src) for k, (op, src) in enumerate(capped) if op == "skip_connect"]
    # the two strongest skip edges are the last block's top two rows (inputs 3 and 2)
    assert [src for _, src in skips] == [3, 2] and all(k >= 4 for k, _ in skips)
    assert sum(op == "sep_conv_3x3" for op, _ in capped) == 4  # the others: their next-best op
    assert all(op != "skip_connect" for op, _ in decode_cell(alphas, max_skips=0))


def test_max_skips_lets_a_struck_edge_lose_its_place():
    # block 1: input 0 strong only through skip, input 1 a weaker skip, input 2 a sep conv
    a = torch.zeros(num_edges(2), len(PRIMITIVES))
    a[edge_index(1, 0), SKIP] = 5.0
    a[edge_index(1, 1), SKIP] = 4.0
    a[edge_index(1, 2), SEP3] = 3.0
    assert decode_cell(a)[2:] == (("skip_connect", 0), ("skip_connect", 1))
    # cap 1 (block 0 has no skip winner): input 1's skip is struck; it falls behind input 2
    assert decode_cell(a, max_skips=1)[2:] == (("skip_connect", 0), ("sep_conv_3x3", 2))


def one_arch_step(term, weight: float, spread: float = 1.0):
    """(α, β) after one Architect step on a fixed batch with ``weight`` × term(α) added
    (none when 0), from α moved ``spread`` × N(0, 1) away from the uniform stationary point."""
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 17, 19), torch.randint(0, 3, (2, 17, 19))
    net = SuperNet(3, layers=2, filter_multiplier=2, block_multiplier=2)
    net.alphas.data.add_(spread * torch.randn_like(net.alphas))
    reg = (lambda: weight * term(net.alphas)) if weight else None
    arch = Architect(net, net.arch_parameters(), 0.05, (0.9, 0.999), 0.0,
                     Precision("off", "cpu"), reg)  # fmt: skip
    arch.step(x, y, step=1)
    return net.alphas.detach().clone(), net.betas.detach().clone()


def test_entropy_weight_sharpens_alpha_and_leaves_beta_alone():
    a0, b0 = one_arch_step(alpha_entropy, 0.0)
    a1, b1 = one_arch_step(alpha_entropy, 10.0)
    assert alpha_entropy(a1) < alpha_entropy(a0)
    torch.testing.assert_close(b1, b0)  # the term depends on α only


def micro_task(tmp_path, **changes):
    cfg = dataclasses.replace(MICRO, workers=0, threads=0, **changes).validated()
    return Search(cfg, tmp_path, torch.device("cpu"), resume=False)


def test_arch_stop_skips_freezes_alpha_beta_once_skips_dominate(tmp_path):
    task = micro_task(tmp_path, arch_stop_skips=2, epochs=4, arch_start_epoch=1)
    with torch.no_grad():
        task.model.alphas.copy_(skip_heavy_alphas(2))
    # not during the warm-up: α has not been trained yet
    assert "arch_frozen_at" not in task.validate(1) and task.arch_frozen_at == 0
    record = task.validate(2)
    assert record["arch_frozen_at"] == 2 and record["skip_count"] == 4
    before = [p.detach().clone() for p in task.model.arch_parameters()]
    for step, batch in enumerate(task.batches(2, 0)):
        assert "arch_loss" not in task.train_step(batch, step)
    assert all(torch.equal(p, q) for p, q in zip(task.model.arch_parameters(), before, strict=True))
    # resumed runs stay frozen
    again = micro_task(tmp_path / "again", arch_stop_skips=2, epochs=4, arch_start_epoch=1)
    again.load_state_dict(task.state_dict())
    assert again.arch_frozen_at == 2
    again.batches(3, 0)
    assert not again.search_arch


def test_guards_are_off_by_default_and_the_run_unchanged(tmp_path):
    from fastadl.search.config import resolve

    cfg = resolve("tiny", {})
    assert (cfg.max_skips, cfg.arch_stop_skips, cfg.arch_entropy_weight) == (-1, 0, 0.0)
    task = micro_task(tmp_path)
    assert task.architect.regularizer is None
    assert task.decode() == task.model.genotype()


def test_search_epoch_records_carry_alpha_and_beta_summaries(tmp_path):
    cfg = dataclasses.replace(MICRO, epochs=2, arch_lr=0.1, workers=0, threads=0)
    run_search(cfg, tmp_path, progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    epochs = [r for r in map(json.loads, lines) if r["kind"] == "epoch"]
    assert len(epochs) == 2
    for r in epochs:
        assert len(r["alpha_softmax"]) == num_edges(cfg.block_multiplier) == len(r["alpha_max"])
        assert all(math.isclose(sum(row), 1.0, abs_tol=1e-3) for row in r["alpha_softmax"])
        assert 0 < r["alpha_entropy"] <= 1 and 0 < r["beta_entropy"] <= 1
        assert set(r["op_shares"]) >= {"skip", "pool", "sep_conv", "dil_conv", "none_dominated"}
    # α moved in the epoch with architecture steps (arch_start_epoch = 1)
    assert epochs[1]["alpha_entropy"] < epochs[0]["alpha_entropy"]
    assert (tmp_path / "plots" / "alpha_history.png").stat().st_size > 1000


def test_summaries_of_uniform_and_decided_architectures():
    uniform = alpha_summary(torch.zeros(9, 8))
    assert uniform["alpha_entropy"] == pytest.approx(1.0)
    assert uniform["alpha_max_mean"] == pytest.approx(1 / 8)
    decided = torch.zeros(9, 8)
    decided[:, SEP3] = 30.0
    assert alpha_summary(decided)["alpha_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert beta_summary(normalize_betas(torch.zeros(4, 4, 3)))["beta_entropy"] == pytest.approx(1)
    sharp = beta_summary(normalize_betas(torch.randn(4, 4, 3) * 40))
    assert sharp["beta_entropy"] < 0.2 and sharp["beta_max_mean"] > 0.9


def test_op_histogram_counts_groups_and_none_dominated_edges():
    a = torch.zeros(num_edges(2), len(PRIMITIVES))
    a[:, NONE] = 3.0  # `none` strongest everywhere: every kept edge is none-dominated
    a[:, SKIP] = 1.0
    cell = decode_cell(a)
    shares = op_histogram(cell, a)
    assert shares["skip"] == 1.0 and shares["pool"] == 0.0 and shares["none_dominated"] == 1.0
    mixed = (("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("dil_conv_5x5", 2), ("skip_connect", 0))
    assert op_histogram(mixed) == {"skip": 0.25, "pool": 0.25, "sep_conv": 0.25, "dil_conv": 0.25}
