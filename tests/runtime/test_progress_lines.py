"""Progress in a log (issue 27): plain lines, no carriage returns, rate-limited; a schedule too
short to learn is said at the start with its numbers and the flag that lengthens it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from small_runs import SMALL_TRAIN

from fastadl.runtime.hooks import LineProgress, clock_text, live_output
from fastadl.search.config import resolve as search_resolve
from fastadl.search.searcher import Search
from fastadl.space.genotype import PAPER_GENOTYPE
from fastadl.train.cli import main as train_main
from fastadl.train.config import resolve as train_resolve
from fastadl.train.model import paper_prefix
from fastadl.train.trainer import Training

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")

# The search's command line, shortened: 2 layers, 16 synthetic 32×32 images, 2 steps an epoch.
MICRO_SEARCH = [
    "--num-images", "16", "--image-size", "32", "--crop-size", "32", "--val-images", "4",
    "--layers", "2", "--filter-multiplier", "2", "--block-multiplier", "2", "--epochs", "3",
    "--arch-start-epoch", "1", "--batch-size", "4", "--backend", "reference", "--device", "cpu",
    "--workers", "0", "--no-tensorboard", "--perturbation-images", "2", "--perturbation-steps", "0",
]  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_loop(steps_per_epoch: int, epochs: int):
    task = SimpleNamespace(steps_per_epoch=steps_per_epoch)
    cfg = SimpleNamespace(epochs=epochs, max_steps=0)
    return SimpleNamespace(task=task, cfg=cfg, step=0, epoch=0, position=0)


def test_line_progress_prints_every_interval_and_at_each_epoch_end():
    out, clock = io.StringIO(), FakeClock()
    lines = LineProgress(out, interval=30.0, clock=clock)
    loop = fake_loop(steps_per_epoch=100, epochs=3)
    lines.start(0)
    record = {"loss": 1.5, "lr": 0.05, "images_per_s": 8.0}
    for epoch in range(3):
        loop.epoch = epoch
        for position in range(1, 101):
            clock.now += 0.5  # 150 s in all
            loop.step, loop.position = loop.step + 1, position
            lines.after_step(loop, record, lambda: {"rss": "0.4G"})
    text = out.getvalue()
    assert "\r" not in text
    printed = text.splitlines()
    # every 30 s (5 lines in 150 s) and the end of each of the 3 epochs (the last coincides)
    assert len(printed) <= 150 / 30 + 3, printed
    assert printed[-1] == (
        "step 300/300 (epoch 3/3, 100/100): loss 1.5000, lr 0.05, 8.0 img/s, 2.00 step/s, "
        "ETA 0:00, rss 0.4G"
    )
    assert "step 60/300 (epoch 1/3, 60/100)" in printed[0] and "ETA 2:00" in printed[0]


def test_clock_text():
    assert clock_text(59.6) == "1:00" and clock_text(3725) == "1:02:05"


def test_a_file_is_not_a_terminal(tmp_path):
    with open(tmp_path / "log.txt", "w") as f:
        assert not live_output(f)
    assert not live_output(io.StringIO())


def test_search_output_redirected_to_a_file_has_plain_lines(tmp_path):
    """The search command line (the same code path as the default search, shortened), with
    stdout and stderr redirected to one file as a batch job or CI would."""
    log = tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.monotonic()
    with open(log, "wb") as f:
        done = subprocess.run(
            [sys.executable, "-m", "fastadl.search", "--out", str(tmp_path / "run"), *MICRO_SEARCH],
            stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, timeout=600,
        )  # fmt: skip
    seconds = time.monotonic() - start
    text = log.read_bytes().decode()
    assert done.returncode == 0, text
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) <= seconds, (seconds, lines)
    steps = [line for line in lines if line.startswith("step ")]
    done_steps = [int(s.split(" (")[0].split()[1].split("/")[0]) for s in steps]
    # each epoch's end, and on a slow machine a line every 30 s between them
    assert {2, 4, 6} <= set(done_steps) and done_steps == sorted(set(done_steps)), lines
    assert all("loss " in s and "img/s" in s and "ETA " in s for s in steps), steps
    assert sum(line.startswith("epoch ") and "val mIoU" in line for line in lines) == 3
    # 8 + 8 images, batch 4: too short, said first, with the numbers and the flag
    assert lines[0].startswith("warning: short schedule: 2 steps per epoch"), lines[0]
    assert "= 6 weight steps and 4 α/β steps" in lines[0] and "--epochs 50" in lines[0]


def test_training_progress_in_a_log_has_plain_lines(tmp_path, capfd):
    assert train_main([*SMALL_TRAIN, "--epochs", "2", "--out", str(tmp_path / "run")]) == 0
    err = capfd.readouterr().err
    assert "\r" not in err
    steps = [line.split(" (")[0] for line in err.splitlines() if line.startswith("step ")]
    assert "step 4/8" in steps and steps[-1] == "step 8/8", err
    assert "warning: short schedule: 4 steps per epoch" in err and "--epochs 125" in err


def test_default_presets_are_long_enough_and_a_32_image_search_is_not(tmp_path):
    cpu = torch.device("cpu")
    cfg = search_resolve("tiny", {"device": "cpu"})
    assert Search(cfg, tmp_path / "a", cpu, resume=False).schedule_warning() is None
    small = search_resolve("tiny", {"device": "cpu", "num_images": 32})
    text = Search(small, tmp_path / "b", cpu, resume=False).schedule_warning()
    assert text.startswith("short schedule: 2 steps per epoch (trainA/trainB hold 16/16 images")
    assert "× 6 epochs = 12 weight steps and 8 α/β steps" in text and "--epochs 50" in text
    genotype = paper_prefix(4)
    tiny = train_resolve("tiny", {"device": "cpu"})
    assert Training(tiny, tmp_path / "c", cpu, genotype).schedule_warning() is None
    short = train_resolve("tiny", {"device": "cpu", "epochs": 2})
    text = Training(short, tmp_path / "d", cpu, PAPER_GENOTYPE).schedule_warning()
    assert "50 steps per epoch" in text and "= 100 steps" in text and "--epochs 10 " in text
