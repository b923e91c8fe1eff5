"""Retraining: run files, poly LR, exact resume, clear genotype errors, non-finite stop, DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from small_runs import SMALL_TRAIN

from fastadl.runtime.rundir.checkpoint import latest_checkpoint, load_checkpoint
from fastadl.runtime.rundir.metrics_log import read
from fastadl.space.genotype import PAPER_GENOTYPE
from fastadl.train.cli import main
from fastadl.train.config import resolve
from fastadl.train.model import build_model, load_genotype
from fastadl.train.trainer import poly_lr, run_train

pytestmark = pytest.mark.usefixtures("one_thread")


# A few seconds per run (small_runs.py).
SMALL = [*SMALL_TRAIN, "--no-progress"]
SMALL_CFG = {
    "num_images": 16,
    "image_size": 32,
    "crop_size": 32,
    "batch_size": 4,
    "val_images": 2,
    "val_batch_size": 2,
    "workers": 0,
    "threads": 0,
    "device": "cpu",
}


def test_poly_lr_is_a_pure_function_of_the_step():
    assert poly_lr(0, 100, 0.05) == 0.05
    assert poly_lr(50, 100, 0.05) == pytest.approx(0.05 * 0.5**0.9)
    assert poly_lr(100, 100, 0.05) == 0.0
    assert poly_lr(150, 100, 0.05) == 0.0  # past the end it stays at 0


def test_train_end_to_end_writes_the_run_files(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*SMALL, "--epochs", "1", "--out", str(run)]) == 0
    for name in ("config.json", "genotype.json", "metrics.jsonl", "plots/curves.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["model"] == "tiny"
    saved = json.loads((run / "genotype.json").read_text())  # the preset's "paper:4"
    assert saved["path"] == list(PAPER_GENOTYPE.path[:4])
    assert saved["cell"] == [list(pair) for pair in PAPER_GENOTYPE.cell]
    records = read(run / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 1 and 0.0 <= epochs[0]["val_miou"] <= 1.0
    state = load_checkpoint(run)
    assert state["step"] == 4 and state["epoch"] == 1
    assert state["class_names"][0] == "background" and len(state["palette"]) == 6
    assert "val mIoU" in capsys.readouterr().out
    # the same command again continues the (finished) run; another config is refused
    assert main([*SMALL, "--epochs", "1", "--out", str(run)]) == 0
    assert "continuing it" in capsys.readouterr().err
    assert load_checkpoint(run)["step"] == 4
    assert [r["step"] for r in read(run / "metrics.jsonl") if r["kind"] == "train"] == [1, 2, 3, 4]
    assert main([*SMALL, "--epochs", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run with another config (epochs: 1 → 2)" in err


def test_resume_is_bitwise_identical_to_a_straight_run(tmp_path):
    # drop-path on: its random numbers come from the global RNG, which resume must restore
    common = [*SMALL, "--epochs", "2", "--drop-path-prob", "0.2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([*common, "--max-steps", "6", "--out", str(straight)]) == 0
    assert main([*common, "--max-steps", "3", "--out", str(resumed)]) == 0
    assert load_checkpoint(resumed)["step"] == 3  # stopped mid-epoch
    saved = (resumed / "genotype.json").read_text()
    (resumed / "genotype.json").unlink()  # e.g. lost with a directory restored from a backup
    assert main(["--resume", str(resumed), "--max-steps", "6", "--no-progress"]) == 0
    assert (resumed / "genotype.json").read_text() == saved  # the checkpoint's genotype again
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
    for k, sa in a["optimizer"]["state"].items():
        sb = b["optimizer"]["state"][k]
        torch.testing.assert_close(sa["momentum_buffer"], sb["momentum_buffer"], rtol=0, atol=0)
    assert a["val_miou"] == b["val_miou"] and len(a["val_miou"]) == 1
    steps = [r["step"] for r in read(resumed / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == list(range(1, 7))  # no step logged twice


def test_malformed_genotype_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "genotype.json"
    bad.write_text("{ not json")
    assert main([*SMALL, "--genotype", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and "Traceback" not in err


def test_genotype_the_network_cannot_use_is_a_clear_error(tmp_path, capsys):
    short = tmp_path / "short.json"
    d = PAPER_GENOTYPE.to_dict()
    d["path"], d["layers"] = [0, 1], 2  # the decoder needs the third cell's output
    short.write_text(json.dumps(d))
    assert main([*SMALL, "--genotype", str(short), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "at least 3" in err
    missing = tmp_path / "nowhere"
    missing.mkdir()
    assert main([*SMALL, "--genotype", str(missing), "--out", str(tmp_path / "r2")]) == 2
    assert "without a genotype.json" in capsys.readouterr().err
    assert main([*SMALL, "--genotype", "paper:2", "--out", str(tmp_path / "r3")]) == 2
    assert "paper:N needs 3 <= N" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*SMALL, "--epochs", "3", "--max-steps", "4", "--out", str(run)]) == 0
    before = latest_checkpoint(run)
    # an absurd learning rate sends the weights to inf within a step or two
    assert main(["--resume", str(run), "--lr", "1e30", "--max-steps", "12", "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "non-finite" in err and "intact" in err
    assert latest_checkpoint(run) == before
    assert load_checkpoint(run)["step"] == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_two_micro_batches(tmp_path):
    """DistributedSampler deals items round-robin to ranks exactly as weight_step deals them to
    micro-batches, so per-rank BatchNorm statistics and the averaged gradient match."""
    ddp_run, single_run = tmp_path / "ddp", tmp_path / "single"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "fastadl.train", *SMALL, "--threads", "1", "--max-steps", "2",
        "--grad-clip", "5", "--out", str(ddp_run),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One thread like each rank (a different thread count changes the float rounding of convs);
    # gradient clipping keeps this deep BN network's first steps from amplifying that rounding.
    overrides = {"batch_size": 8, "accumulate": 2, "max_steps": 2, "grad_clip": 5.0}
    run_train(resolve("tiny", {**SMALL_CFG, **overrides, "threads": 1}), single_run, progress=False)
    a, b = load_checkpoint(ddp_run), load_checkpoint(single_run)
    assert a["step"] == b["step"] == 2
    cfg = resolve("tiny", {})
    model = build_model(cfg, load_genotype(cfg.genotype), 6)
    names = [n for n, _ in model.named_parameters()]  # BN running stats legitimately differ
    assert names
    for n in names:
        torch.testing.assert_close(a["model"][n], b["model"][n], msg=lambda m, n=n: f"{n}: {m}")
    assert Path(ddp_run / "config.json").is_file()


def test_a_searched_genotype_loads_and_trains(tmp_path):
    """The hand-off a user makes: search, then retrain the network the search found."""
    import dataclasses

    from fastadl.search.config import resolve as resolve_search
    from fastadl.search.searcher import run_search

    search_cfg = dataclasses.replace(
        resolve_search("tiny", {}), num_images=16, image_size=32, crop_size=32, val_images=2,
        layers=3, filter_multiplier=2, block_multiplier=5, epochs=1, arch_start_epoch=0,
        batch_size=4, workers=0, threads=0, device="cpu",
        op_selection="alpha",  # the hand-off here; perturbation has its own test
    )  # fmt: skip
    run_search(search_cfg, tmp_path / "search", progress=False)
    searched = load_genotype(str(tmp_path / "search" / "genotype.json"))
    assert searched.layers == 3
    run = tmp_path / "train"
    assert (
        main([*SMALL, "--epochs", "1", "--genotype", str(tmp_path / "search"), "--out", str(run)])
        == 0
    )
    assert load_genotype(str(run / "genotype.json")) == searched
    assert load_checkpoint(run)["step"] == 4
