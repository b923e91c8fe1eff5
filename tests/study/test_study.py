"""``python -m fastadl.study``: a tiny end-to-end study, resuming, and bad input."""

import json

import pytest

from fastadl.runtime.loop import LoopResult
from fastadl.space.genotype import Genotype
from fastadl.study import jobs as study_jobs
from fastadl.study.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

# The smallest real runs: a 3-layer trellis (the retrained network needs 3 cells) with one
# block per cell, 8 synthetic 32×32 images, one search step and two retraining steps.
_DATA = "--num-images 8 --image-size 32 --crop-size 32 --batch-size 4 --val-images 2 " \
        "--val-batch-size 2 --workers 0 --threads 0 --device cpu"  # fmt: skip
# the tiny preset's perturbation selection, on 2 images without fine-tuning: cheap
SEARCH = f"{_DATA} --layers 3 --filter-multiplier 2 --block-multiplier 1 --epochs 1 " \
         "--arch-start-epoch 0 --perturbation-images 2 --perturbation-steps 0"  # fmt: skip


def study_args(out, *extra):
    return ["searched-vs-random", "--seeds", "1", "--random", "1", "--retrain-epochs", "1",
            "--out", str(out), "--no-progress", f"--search-flags={SEARCH}",
            f"--train-flags={_DATA}", *extra]  # fmt: skip


def test_tiny_study_end_to_end_and_rerun(tmp_path):
    out = tmp_path / "study"
    assert main(study_args(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished_runs"] == summary["total_runs"] == 3
    assert {g: s["n"] for g, s in summary["groups"].items()} == {"searched": 1, "random": 1}
    assert summary["verdict"]["complete"]
    for name in ("groups.png", "op_shares.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "train-searched-s0" in report and "train-random-r0" in report
    # the searched retraining trained the search's genotype, the random one the drawn genotype
    searched = Genotype.load(out / "search-s0" / "genotype.json")
    assert Genotype.load(out / "train-searched-s0" / "genotype.json") == searched
    drawn = Genotype.load(out / "genotypes" / "random-r0.json")
    assert Genotype.load(out / "train-random-r0" / "genotype.json") == drawn
    assert (drawn.block_multiplier, drawn.layers) == (1, 3)

    # the same command again: finished runs are read back, an unfinished one continues
    (out / "train-random-r0" / "result.json").unlink()  # as if killed before writing it
    search_log = (out / "search-s0" / "metrics.jsonl").read_text()
    assert main(study_args(out)) == 0
    assert (out / "search-s0" / "metrics.jsonl").read_text() == search_log
    again = json.loads((out / "summary.json").read_text())
    assert again["groups"] == summary["groups"]


def fake_runs(monkeypatch, calls, fail_at=None):
    """Replace the real loops: each call is recorded, the ``fail_at``-th is 'killed'."""

    def run(cfg, run_dir, *, resume, progress):
        calls.append((run_dir.name, resume))
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        run_dir.mkdir(parents=True, exist_ok=True)
        g = Genotype(cell=(("sep_conv_3x3", 0), ("skip_connect", 1)), path=(0, 1, 1),
                     filter_multiplier=2, block_multiplier=1, layers=3)  # fmt: skip
        g.save(run_dir / "genotype.json")
        return LoopResult(run_dir, step=2, epoch=1, val_miou=[0.1, 0.2 + 0.01 * len(calls)])

    monkeypatch.setattr("fastadl.search.searcher.run_search", run)
    monkeypatch.setattr("fastadl.train.trainer.run_train", run)


def test_a_killed_study_continues_from_what_it_finished(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    calls = []
    fake_runs(monkeypatch, calls, fail_at=2)  # killed during the searched genotype's retraining
    assert main(study_args(out)) == 130
    assert "same command" in capsys.readouterr().err
    assert (out / "search-s0" / study_jobs.RESULT_FILE).is_file()
    assert not (out / "train-searched-s0" / study_jobs.RESULT_FILE).exists()
    calls.clear()
    fake_runs(monkeypatch, calls)
    assert main(study_args(out)) == 0
    # the finished search is not run again; the interrupted run continues (resume=True)
    assert calls == [("train-searched-s0", True), ("train-random-r0", True)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished_runs"] == 3


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--search-flags=--no-such-flag"], "--search-flags: unrecognized arguments"),
        (["--search-flags=--seed 3"], "--seed is set by the study"),
        (["--train-flags=--epochs 3"], "--epochs is set by the study"),
        (["--search-flags=--out x"], "--out is set by the study"),
        (["--train-flags=--batch-size 0"], "batch_size"),
        (["--seeds", "0", "--random", "0"], "nothing to run"),
        (["--random", "-1"], "--random: must be >= 0"),
    ],
)
def test_bad_flags_give_one_clear_line(tmp_path, capsys, extra, fragment):
    assert main(study_args(tmp_path / "s", *extra)) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "study.json").exists()


def test_another_study_in_the_same_directory_is_refused(tmp_path, monkeypatch, capsys):
    fake_runs(monkeypatch, [])
    out = tmp_path / "study"
    assert main(study_args(out)) == 0
    drawn = (out / "genotypes" / "random-r0.json").read_text()
    assert main([*study_args(out), "--draw-seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "study.json" in err and "draw_seed" in err
    assert (out / "genotypes" / "random-r0.json").read_text() == drawn  # left as it was
    assert main(["cells", "--out", str(out), "--no-progress"]) == 2
    assert main(["nope", "--out", str(out)]) == 2


def test_one_group_only_studies(tmp_path, monkeypatch):
    calls = []
    fake_runs(monkeypatch, calls)
    assert main([*study_args(tmp_path / "a"), "--random", "0"]) == 0  # a search variant alone
    assert [name for name, _ in calls] == ["search-s0", "train-searched-s0"]
    calls.clear()
    assert main([*study_args(tmp_path / "b"), "--seeds", "0", "--random", "2"]) == 0
    assert [name for name, _ in calls] == ["train-random-r0", "train-random-r1"]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["verdict"] == {"complete": False} and summary["groups"]["random"]["n"] == 2


def test_fixed_path_control_keeps_the_random_cells(tmp_path, monkeypatch, capsys):
    fake_runs(monkeypatch, [])
    args = ["--seeds", "0", "--random", "3"]
    assert main([*study_args(tmp_path / "a"), *args]) == 0
    assert main([*study_args(tmp_path / "b"), *args, "--fixed-path", "0,0,1"]) == 0
    for i in range(3):
        free = Genotype.load(tmp_path / "a" / "genotypes" / f"random-r{i}.json")
        fixed = Genotype.load(tmp_path / "b" / "genotypes" / f"random-r{i}.json")
        assert fixed.cell == free.cell and fixed.path == (0, 0, 1)
    assert main([*study_args(tmp_path / "c"), *args, "--fixed-path", "0,2,2"]) == 2
    assert "--fixed-path [0, 2, 2]" in capsys.readouterr().err
