"""``python -m fastadl.study quality`` (study v2): its genotypes, job order, report and tests."""

import json

import pytest

from fastadl.space.genotype import Genotype
from fastadl.space.path_prior import all_paths, prior_path
from fastadl.study.cli import main
from fastadl.study.quality import matched_paths, untrained_cell
from fastadl.study.quality_report import genotype_scores, level_tests
from tests.study.test_study import _DATA, SEARCH, fake_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def quality_args(out, *extra):
    return ["quality", "--searches", "1", "--cells", "2", "--seeds", "2", "--paths", "2",
            "--retrain-epochs", "1", "--out", str(out), "--no-progress",
            f"--search-flags={SEARCH}", f"--train-flags={_DATA}", *extra]  # fmt: skip


def test_matched_paths_are_the_nearest_in_depth_and_never_the_searched_one():
    searched = (0, 1, 1, 2)
    picked = matched_paths(searched, 6, seed=0)
    assert searched not in picked and len(set(picked)) == 6
    depth = sum(searched)
    others = sorted(abs(sum(p) - depth) for p in all_paths(4) if p != searched)
    assert sorted(abs(sum(p) - depth) for p in picked) == others[:6]
    assert matched_paths(searched, 6, seed=0) == picked  # seeded
    # the prior path is the only path of depth 0: its neighbours are the depth-1 paths
    assert {sum(p) for p in matched_paths(prior_path(4), 4, seed=1)} == {1}


def test_untrained_cell_is_a_valid_seeded_decode_of_initial_noise():
    cells = {untrained_cell(3, seed) for seed in range(10)}
    assert untrained_cell(3, 7) == untrained_cell(3, 7) and len(cells) == 10
    for cell in cells:
        Genotype(cell, (0, 0, 0), filter_multiplier=2, block_multiplier=3, layers=3)  # validates
        assert all(op != "none" for op, _ in cell)


def test_study_runs_every_group_in_dependency_order(tmp_path, monkeypatch):
    calls = []
    fake_runs(monkeypatch, calls)
    out = tmp_path / "q"
    assert main(quality_args(out, "--no-proxy")) == 0  # fake runs leave no supernet to score in
    names = [name for name, _ in calls]
    # 1 search; searched, cell-prior and 2 random paths × 2 seeds; 2 random cells and the
    # no-search cell × 2 seeds
    assert len(names) == 1 + 4 * 2 + 3 * 2
    assert names.index("search-s0") < min(names.index(n) for n in names if "-s0-t" in n)
    searched = Genotype.load(out / "search-s0" / "genotype.json")
    prior = Genotype.load(out / "genotypes" / "cell-prior-s0.json")
    assert prior.cell == searched.cell and prior.path == prior_path(searched.layers)
    for j in range(2):
        moved = Genotype.load(out / "genotypes" / f"random-path-p{j}-s0.json")
        assert moved.cell == searched.cell and moved.path != searched.path
    for i in range(2):
        cell = Genotype.load(out / "genotypes" / f"random-cell-r{i}.json")
        assert cell.path == prior_path(cell.layers)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["scores"]) == {"searched", "cell-prior", "random-cell", "no-search",
                                      "random-path"}  # fmt: skip
    assert all(len(runs) == 2 for g in summary["scores"].values() for runs in g.values())
    report = (out / "report.md").read_text()
    assert "one-sided p" in report and "variance share" in report.lower()
    for level in ("cell", "path"):
        assert (out / "plots" / f"{level}.png").stat().st_size > 1000
    # retrained on the probe model unless --train-flags says otherwise
    study = json.loads((out / "study.json").read_text())
    assert {j["config"]["model"] for j in study["jobs"] if j["kind"] == "train"} == {"probe"}


def test_parallel_jobs_give_the_same_numbers(tmp_path):
    # real (tiny) runs: one process and two processes at once agree exactly
    args = ["--searches", "1", "--cells", "1", "--seeds", "1", "--paths", "1"]
    assert main([*quality_args(tmp_path / "one"), *args]) == 0
    assert main([*quality_args(tmp_path / "two"), *args, "--jobs", "2"]) == 0
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert one["scores"] == two["scores"] and len(one["scores"]) == 5
    # every genotype scored inside the search's supernet, τ against the retrained scores
    proxy = json.loads((tmp_path / "one" / "proxy.json").read_text())
    assert set(proxy["search-s0"]) == {"searched-s0", "cell-prior-s0", "random-path-p0-s0",
                                       "random-cell-r0", "no-search"}  # fmt: skip
    assert one["proxy"]["per_search"]["search-s0"]["genotypes"] == 5
    assert "Mean τ over supernets" in (tmp_path / "one" / "report.md").read_text()


def test_level_tests_on_known_scores():
    def runs(group, genotype, values):
        return [{"kind": "train", "group": group, "name": f"train-{genotype}-t{t}",
                 "val_miou": v} for t, v in enumerate(values)]  # fmt: skip

    results = []
    for k, base in enumerate((0.50, 0.52, 0.51)):
        results += runs("searched", f"searched-s{k}", (base, base + 0.01))
        results += runs("cell-prior", f"cell-prior-s{k}", (base - 0.05, base - 0.04))
        for j in range(2):
            results += runs("random-path", f"random-path-p{j}-s{k}", (0.3 + 0.01 * j, 0.31))
    for i in range(6):
        results += runs("random-cell", f"random-cell-r{i}", (0.2 + 0.02 * i, 0.21 + 0.02 * i))
    results += runs("no-search", "no-search", (0.25, 0.26))
    tests = level_tests(genotype_scores(results))
    cell, path = tests["cell"], tests["path"]
    # the 3 cell-prior genotypes beat all 6 random cells: the most extreme of C(9, 3) splits
    assert cell["vs_random"]["p"] == pytest.approx(1 / 84) and cell["vs_random"]["significant"]
    assert cell["vs_no_search"]["unit"] == "runs" and cell["vs_no_search"]["n"] == [6, 2]
    assert path["vs_random"]["p"] == pytest.approx(1 / 84)
    assert path["vs_no_search"]["differences"] == pytest.approx([0.05] * 3)
    assert path["vs_no_search"]["p"] == pytest.approx(1 / 8)  # 3 searches: never below 1/8
    low, high = cell["vs_random"]["gain_ci"]
    assert low <= cell["vs_random"]["gain"] <= high and low > 0
    share = tests["variance_share"]["random cells"]
    assert share["share"] > 0.9 and share["genotypes"] == 6


def test_paths_of_equal_depth_are_compared_within_one_cell():
    from fastadl.study.quality_report import equal_depth_paths

    def runs(cell, path, values):
        return [{"kind": "train", "val_miou": v, "genotype": {"cell": cell, "path": path}}
                for v in values]  # fmt: skip

    a, b = [["skip_connect", 0], ["sep_conv_3x3", 1]], [["max_pool_3x3", 0], ["skip_connect", 1]]
    results = (runs(a, [0, 1, 1], [0.30, 0.31]) + runs(a, [1, 1, 0], [0.20, 0.21])
               + runs(a, [0, 0, 0], [0.5, 0.5]) + runs(b, [1, 1, 0], [0.4, 0.4]))  # fmt: skip
    (found,) = equal_depth_paths(results)  # depth 0 and cell b have one path each: not compared
    assert found["depth"] == 2 and found["paths"] == [[0, 1, 1], [1, 1, 0]]
    assert found["share"] == pytest.approx(0.99, abs=0.005)


def test_proxy_tau_and_selection_from_known_scores():
    from fastadl.study.quality_proxy import proxy_tau, scored_genotypes

    g = {"cell": [["skip_connect", 0], ["sep_conv_3x3", 1]], "path": [0, 0, 0]}

    def runs(group, key, values):
        return [{"kind": "train", "group": group, "name": f"train-{key}-t{t}", "val_miou": v,
                 "genotype": g} for t, v in enumerate(values)]  # fmt: skip

    results = [{"kind": "search", "name": "search-s0"}, {"kind": "search", "name": "search-s1"}]
    results += runs("searched", "searched-s0", (0.40, 0.42)) + runs(
        "searched", "searched-s1", (0.30, 0.30)
    )
    results += runs("random-cell", "random-cell-r0", (0.2, 0.2))
    results += runs("random-cell", "random-cell-r1", (0.25, 0.27))
    results += runs("no-search", "no-search", (0.1, 0.1))
    table = scored_genotypes(results)
    # each supernet scores its own searched genotype and the shared ones, not the other search's
    assert set(table["search-s0"]) == {
        "searched-s0",
        "random-cell-r0",
        "random-cell-r1",
        "no-search",
    }
    assert table["search-s1"]["searched-s1"]["retrained"] == pytest.approx(0.30)
    scores = {
        "search-s0": {"searched-s0": 0.9, "random-cell-r0": 0.5, "random-cell-r1": 0.6, "no-search": 0.1},
        "search-s1": {"searched-s1": 0.95, "random-cell-r0": 0.6, "random-cell-r1": 0.5, "no-search": 0.1},
    }  # fmt: skip
    out = proxy_tau(results, scores)
    assert out["per_search"]["search-s0"]["tau"] == pytest.approx(1.0)  # same order throughout
    assert out["per_search"]["search-s1"]["tau"] < 1.0
    # the proxy picks search-s1 (0.95 > 0.9), whose genotype retrained worse than the mean
    assert out["selection"] == {"picked": "search-s1", "picked_retrained": pytest.approx(0.30),
                                "searched_mean": pytest.approx(0.355)}  # fmt: skip
