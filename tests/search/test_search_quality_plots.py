"""The α-over-time plot of a search and the study's plots write readable PNGs."""

import pytest
import torch

from fastadl.search.arch_stats import alpha_summary, beta_summary
from fastadl.search.plots import plot_alpha_history
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import normalize_betas
from fastadl.study.plots import plot_groups, plot_op_shares
from fastadl.study.report import group_stats, searched_vs_random_verdict
from tests.search.test_plots import _check_png


@pytest.mark.parametrize("edges", [9, 20])  # the tiny search's B = 3, the paper's B = 5
def test_alpha_history_draws_every_edge_over_the_epochs(tmp_path, edges):
    g = torch.Generator().manual_seed(0)
    records = [{"kind": "step", "step": 1, "loss": 1.0}]
    for epoch in range(1, 5):
        alphas = torch.randn(edges, len(PRIMITIVES), generator=g) * epoch
        betas = normalize_betas(torch.randn(4, 4, 3, generator=g))
        records.append({"kind": "epoch", "epoch": epoch, **alpha_summary(alphas),
                        **beta_summary(betas)})  # fmt: skip
    _check_png(plot_alpha_history(records, PRIMITIVES, tmp_path / "a.png"), min_side=400)
    with pytest.raises(ValueError, match="no epoch records"):
        plot_alpha_history(records[:1], PRIMITIVES, tmp_path / "b.png")
    with pytest.raises(ValueError, match="ops per edge"):
        plot_alpha_history(records, PRIMITIVES[1:], tmp_path / "c.png")


def test_study_plots_and_verdict(tmp_path):
    results = [
        {"kind": "train", "group": "searched", "name": f"s{i}", "val_miou": v,
         "genotype": {"cell": [["sep_conv_3x3", 0], ["skip_connect", 1]], "path": [0, 0, 1]}}
        for i, v in enumerate([0.40, 0.42, 0.44])
    ] + [
        {"kind": "train", "group": "random", "name": f"r{i}", "val_miou": v,
         "genotype": {"cell": [["max_pool_3x3", 0], ["dil_conv_5x5", 1]], "path": [1, 2, 3]}}
        for i, v in enumerate([0.30, 0.35, 0.40])
    ] + [{"kind": "search", "group": "search", "name": "search-s0", "val_miou": 0.2}]  # fmt: skip
    stats = group_stats(results)
    assert set(stats) == {"searched", "random"}  # searches are not retrainings
    assert stats["random"]["mean"] == pytest.approx(0.35)
    assert stats["random"]["std"] == pytest.approx(0.05)  # sample std (n - 1)
    verdict = searched_vs_random_verdict(stats)
    assert verdict["margin"] == pytest.approx(0.07) and verdict["beats_random_by_one_std"]
    stats["searched"]["mean"] = 0.39
    assert not searched_vs_random_verdict(stats)["beats_random_by_one_std"]
    _check_png(plot_groups(stats, "searched-vs-random", tmp_path / "g.png"))
    trained = [r for r in results if r["kind"] == "train"]
    _check_png(plot_op_shares(trained, tmp_path / "o.png"))
