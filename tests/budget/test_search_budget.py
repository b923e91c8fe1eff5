"""A search with a cost budget: the penalty moves the expected cost down, the records and
genotype.json report it, and without a target the search is what it was (the term never runs)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fastadl.budget import search_term
from fastadl.budget.search_term import Budget
from fastadl.search import architect, searcher
from fastadl.search.config import ConfigError
from fastadl.search.searcher import Search, run_search
from fastadl.space.genotype import Genotype
from tests.budget.synthetic import synthetic_table
from tests.search.test_search import MICRO, params_of

UNITS = ("ms", "GMACs", "Mparams")


def fake_budget(cfg, num_classes, default_size, build=None):
    """search_budget with made-up tables instead of measured ones."""
    target = cfg.latency_target
    if not target:
        return None
    tables = {u: synthetic_table(seed=i, unit=u) for i, u in enumerate(UNITS)}
    return Budget("ms", target, cfg.cost_weight_alpha, cfg.cost_weight_beta, tables, cfg.layers)


def arch_run(tmp_path, steps: int, **changes):
    cfg = dataclasses.replace(MICRO, layers=3, workers=0, threads=0, arch_lr=0.1, **changes)
    task = Search(cfg.validated(), tmp_path, torch.device("cpu"), resume=False)
    step = 0
    for epoch in range(cfg.epochs, cfg.epochs + steps):  # past the warm-up: α/β steps on
        for batch in task.batches(epoch, 0):
            if step < steps:
                task.train_step(batch, step)
            step += 1
    return task


def test_penalty_moves_expected_cost_below_the_unconstrained_search(tmp_path, monkeypatch):
    monkeypatch.setattr(searcher, "search_budget", fake_budget)
    free = arch_run(tmp_path / "free", 2)
    table = synthetic_table(seed=0)
    budget = Budget("ms", 1.0, 1.0, 1.0, {"ms": table}, layers=3)
    with torch.no_grad():
        unconstrained = budget.expected(free.model.alphas, free.model.betas).item()
    target = 0.5 * unconstrained  # far below: the hinge is active at every step
    tight = arch_run(tmp_path / "tight", 2, latency_target=target)
    with torch.no_grad():
        constrained = budget.expected(tight.model.alphas, tight.model.betas).item()
    assert constrained < unconstrained - 1e-3


def test_separate_weights_reach_only_their_parameters():
    table = synthetic_table(seed=3)
    alphas = torch.zeros(5, 8, requires_grad=True)
    betas = torch.zeros(3, 4, 3, requires_grad=True)
    budget = Budget("ms", 1.0, 0.0, 2.0, {"ms": table}, layers=3)  # far over: active
    ga, gb = torch.autograd.grad(budget.penalty(alphas, betas), [alphas, betas], allow_unused=True)
    assert ga is None or not ga.any()
    assert gb.abs().sum() > 0
    # at or below the target: no pull at all
    loose = Budget("ms", 1e6, 1.0, 1.0, {"ms": table}, layers=3)
    assert loose.penalty(alphas, betas).item() == 0.0


def test_decoded_estimate_reads_the_decoded_cost_with_the_expected_gradient():
    from fastadl.budget.table import genotype_cost
    from fastadl.space.genotype import decode_cell, viterbi
    from fastadl.space.trellis import normalize_betas

    table = synthetic_table(seed=4)
    gen = torch.Generator().manual_seed(0)
    alphas = torch.randn(5, 8, generator=gen).requires_grad_()
    betas = torch.randn(3, 4, 3, generator=gen).requires_grad_()
    decoded = Genotype(decode_cell(alphas), viterbi(normalize_betas(betas)),
                       filter_multiplier=2, block_multiplier=2, layers=3)  # fmt: skip
    plain = Budget("ms", 1.0, 1.0, 1.0, {"ms": table}, layers=3)
    straight = Budget("ms", 1.0, 1.0, 1.0, {"ms": table}, layers=3, decoder=lambda: decoded)
    got = straight.estimate(alphas, betas)
    torch.testing.assert_close(got.item(), genotype_cost(table, decoded))
    expected = plain.estimate(alphas, betas)
    assert abs(got.item() - expected.item()) > 1e-3  # the mode is not the mean here
    for a, b in zip(torch.autograd.grad(got, [alphas, betas]),
                    torch.autograd.grad(expected, [alphas, betas]), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b)


def test_budgeted_run_reports_cost(tmp_path, monkeypatch):
    monkeypatch.setattr(searcher, "search_budget", fake_budget)
    cfg = dataclasses.replace(MICRO, layers=3, epochs=2, latency_target=10.0)
    run_search(cfg, tmp_path, progress=False)
    data = json.loads((tmp_path / "genotype.json").read_text())
    genotype = Genotype.load(tmp_path / "genotype.json")  # still a loadable genotype
    predicted = data["predicted_cost"]
    assert set(UNITS) <= set(predicted) and predicted["target"] == 10.0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r.get("kind") == "epoch"][-1]
    assert last["cost_target"] == 10.0 and last["cost_unit"] == "ms"
    assert last["decoded_cost"] == pytest.approx(predicted["ms"])
    assert predicted["ms"] == pytest.approx(
        search_term.genotype_cost(synthetic_table(seed=0), genotype)
    )
    assert (tmp_path / "plots" / "alpha_history.png").is_file()


def test_no_target_never_calls_the_budget_and_runs_as_before(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the budget ran in a search without a target")

    for name in ("penalty", "expected", "record", "save_genotype"):
        monkeypatch.setattr(Budget, name, refuse)
    monkeypatch.setattr(search_term, "dense_cost", refuse)
    cfg = dataclasses.replace(MICRO, max_steps=3)
    run_search(cfg, tmp_path / "now", progress=False)
    assert "predicted_cost" not in json.loads((tmp_path / "now" / "genotype.json").read_text())
    # the code path before budgets: no regularizer at all when every extra term is off
    monkeypatch.setattr(architect, "arch_regularizer", lambda *args, **kwargs: None)
    run_search(cfg, tmp_path / "before", progress=False)
    now, before = params_of(tmp_path / "now"), params_of(tmp_path / "before")
    assert now.keys() == before.keys()
    for key in now:
        assert torch.equal(now[key], before[key]), key


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"latency_target": 5.0, "flops_target": 1.0}, "not both"),
        ({"latency_target": 5.0, "layers": 2}, "--layers >= 3"),
        ({"flops_target": 1.0, "layers": 4, "deploy_size": "512"}, "--deploy-size must be HxW"),
    ],
)
def test_bad_budget_flags_are_named(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        dataclasses.replace(MICRO, **changes).validated()


def test_search_budget_builds_its_tables_once_at_the_deploy_size():
    calls = []

    def build(model_kwargs, size, unit, device, threads):
        calls.append((unit, tuple(size), device, threads, model_kwargs["layers"]))
        return synthetic_table(seed=len(calls), unit=unit)

    def no_size():
        raise AssertionError("the default size is read only when a target is set")

    assert search_term.search_budget(MICRO, 5, no_size, build) is None and not calls
    cfg = dataclasses.replace(MICRO, layers=3, flops_target=2.0, deploy_threads=2)
    budget = search_term.search_budget(cfg, 5, lambda: (32, 48), build)
    assert [c[0] for c in calls] == ["GMACs", "ms", "Mparams"]
    assert {c[1:] for c in calls} == {((32, 48), "cpu", 2, 3)}
    assert (budget.unit, budget.target, budget.context["deploy_size"]) == ("GMACs", 2.0, [32, 48])
    sized = dataclasses.replace(cfg, deploy_size="64x96")
    assert search_term.search_budget(sized, 5, no_size, build).context["deploy_size"] == [64, 96]


def test_cost_estimate_decoded_hands_the_search_its_own_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(searcher, "search_budget", fake_budget)
    cfg = dataclasses.replace(MICRO, layers=3, latency_target=10.0, cost_estimate="decoded")
    task = Search(cfg.validated(), tmp_path, torch.device("cpu"), resume=False)
    assert task.budget.decoder == task.decode
    plain = Search(dataclasses.replace(cfg, cost_estimate="expected").validated(),
                   tmp_path / "b", torch.device("cpu"), resume=False)  # fmt: skip
    assert plain.budget.decoder is None
