"""``python -m fastadl.study pareto``: its plan (budgeted searches at quantile targets, random
genotypes), its report (measured latency, front, dominance, plot) and its rerun."""

import json

import pytest

from fastadl.space.genotype import Genotype
from fastadl.study import pareto
from fastadl.study.cli import main
from tests.study.test_study import _DATA, SEARCH, fake_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def cost_of(genotype: Genotype) -> float:
    """A stand-in latency: deeper paths and convolutions cost more (ms)."""
    convs = sum(op.startswith(("sep", "dil")) for op, _ in genotype.cell)
    return 1.0 + sum(genotype.path) + 0.5 * convs


@pytest.fixture
def fake_latency(monkeypatch):
    measured = []

    def latency(args, search, train):
        def measure(g):
            measured.append(g)
            return 1.1 * cost_of(g)

        return cost_of, measure, {"model": train[1]["model"], "size": args.deploy_size}

    monkeypatch.setattr("fastadl.study.cli.pareto_latency", latency)
    return measured


def pareto_args(out, *extra):
    return ["pareto", "--random", "3", "--targets", "0.25,0.5", "--retrain-epochs", "1",
            "--out", str(out), "--no-progress", f"--search-flags={SEARCH}",
            f"--train-flags={_DATA}", *extra]  # fmt: skip


def test_pareto_study_plans_budgeted_searches_and_reports_the_front(
    tmp_path, monkeypatch, fake_latency
):
    calls = []
    fake_runs(monkeypatch, calls)
    out = tmp_path / "p"
    assert main(pareto_args(out)) == 0
    study = json.loads((out / "study.json").read_text())
    jobs = {j["name"]: j for j in study["jobs"]}
    # one search without a target and one per quantile, each retrained; 3 random genotypes
    searches = [n for n, j in jobs.items() if j["kind"] == "search"]
    assert searches == ["search-free", "search-q25", "search-q50"]
    assert jobs["search-free"]["config"]["latency_target"] == 0
    t25, t50 = study["settings"]["targets_ms"]
    assert jobs["search-q25"]["config"]["latency_target"] == t25 < t50
    assert jobs["search-q50"]["config"]["latency_target"] == t50
    for name in searches:  # the budget is for the retraining model, on one CPU thread
        cfg = jobs[name]["config"]
        assert (cfg["deploy_model"], cfg["deploy_size"], cfg["deploy_threads"]) == (
            "tiny", "256x256", 1)  # fmt: skip
    # the quantiles are those of uniformly random genotypes' predicted latency
    space = Genotype.load(out / "genotypes" / "random-r0.json")
    expected = pareto.quantile_targets((0.25, 0.5), cost_of, space.block_multiplier,
                                       space.layers, space.filter_multiplier, 0)  # fmt: skip
    assert [t25, t50] == expected
    assert sum(n.startswith("train-random-r") for n in jobs) == 3
    assert len(calls) == 3 + 3 + 3
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["points"]) == 3 + 3  # one per retrained genotype (searched, random)
    for p in summary["points"].values():
        assert p["latency_ms"] == pytest.approx(1.1 * cost_of(Genotype.from_dict(p["genotype"])))
    assert summary["front"] and set(summary["front"]) <= set(summary["points"])
    report = (out / "report.md").read_text()
    assert "dominates a searched one" in report and "| measured (ms) |" in report
    assert (out / "plots" / "pareto.png").stat().st_size > 1000
    # a rerun runs nothing and times nothing again
    calls.clear()
    fake_latency.clear()
    assert main(pareto_args(out)) == 0
    assert calls == [] and fake_latency == []


def test_pareto_summary_names_the_random_genotypes_that_dominate():
    points = {
        "searched-free": {"group": "searched", "target_ms": None, "latency_ms": 5.0, "score": 0.4},
        "searched-q25": {"group": "searched", "target_ms": 3.0, "latency_ms": 3.2, "score": 0.3},
        "random-r0": {"group": "random", "target_ms": None, "latency_ms": 3.0, "score": 0.35},
        "random-r1": {"group": "random", "target_ms": None, "latency_ms": 6.0, "score": 0.5},
    }
    summary = pareto.pareto_summary(points)
    assert summary["searched"]["searched-q25"]["dominated_by"] == ["random-r0"]
    assert summary["searched"]["searched-q25"]["within_110"] is True  # 3.2 <= 3.3
    assert summary["searched"]["searched-free"]["dominated_by"] == []
    assert summary["front"] == ["random-r0", "searched-free", "random-r1"]
    assert summary["undominated"] is False


def test_bad_quantiles_are_one_line_errors(tmp_path, capsys):
    assert main(pareto_args(tmp_path / "p", "--targets", "0.5,1.5")) == 2
    assert "quantiles must be distinct, in (0, 1)" in capsys.readouterr().err
