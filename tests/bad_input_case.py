"""One bad-input case (tests/bad_inputs.py): a command line and what its error must name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# One step of 2 images and a validation: every image of a 2-train / 1-val dataset is read.
TRAIN_RUN = [
    "--model", "tiny", "--genotype", "paper:3", "--crop-size", "16", "--batch-size", "2",
    "--epochs", "1", "--val-batch-size", "1", "--workers", "0", "--threads", "0",
    "--device", "cpu", "--no-progress",
]  # fmt: skip
SEARCH_RUN = [
    "--layers", "1", "--filter-multiplier", "1", "--block-multiplier", "1", "--crop-size", "16",
    "--batch-size", "1", "--epochs", "1", "--arch-start-epoch", "0", "--val-batch-size", "1",
    "--backend", "reference", "--workers", "0", "--threads", "0", "--device", "cpu",
    "--no-progress",
]  # fmt: skip
SYNTH = ["--num-images", "4", "--image-size", "16", "--val-images", "1"]


@dataclass
class Case:
    name: str
    group: str  # dataset, genotype, config, checkpoint, flags
    command: str
    argv: list[str]
    names: tuple[str, ...]  # what the error line must contain
    run_dir: Path | None = None  # the run directory the command writes into or resumes
    resume: bool = False  # the run directory existed before: it must be left unchanged
