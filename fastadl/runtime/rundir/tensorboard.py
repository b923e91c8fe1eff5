"""TensorBoard event files in a run directory, beside metrics.jsonl (which stays the record the
code reads): ``tensorboard --logdir runs`` shows every run under ``runs/``.

What is written, from the same records metrics.jsonl gets (hooks.py's TensorBoardHook):
- every step: each number of the step record as ``train/<field>`` (loss, lr, arch_loss,
  images_per_s, ...);
- every epoch: each number of the epoch record as ``val/<field>`` (val_miou, val_pixel_acc) or
  ``arch/<field>`` (α/β entropies and largest weights, skip_count, op_shares/<group>, ...); the
  search's softmax(α) (E × K) and normalised β (L × 12) as images and histograms, and the
  largest softmax(α) per edge as a histogram; the genotype as text; every ``plots/*.png`` as an
  image ``plots/<name>``.

A resumed run reopens the directory with ``purge_step`` at its checkpoint's step: TensorBoard
hides what the previous process wrote after that step, as metrics.jsonl is cut back to it.

torch.utils.tensorboard needs the ``tensorboard`` package (a dependency of fastadl); without
it ``open_board`` says so once and the run goes on without event files.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Epoch-record fields drawn as images/histograms rather than scalars (fastadl/search/arch_stats.py).
MATRICES = {"alpha_softmax": "arch/alpha_softmax", "beta_normalized": "arch/beta_normalized"}
HISTOGRAMS = {"alpha_max": "arch/alpha_max_per_edge"}
FLUSH_SECONDS = 30


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def open_board(run_dir: Path, purge_step: int | None = None) -> RunBoard | None:
    """A RunBoard writing into ``run_dir``, or None (with one line on stderr) when the
    tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        print(
            f"warning: no TensorBoard event files ({e}); pip install tensorboard, "
            "or pass --no-tensorboard",
            file=sys.stderr,
        )
        return None
    writer = SummaryWriter(str(run_dir), purge_step=purge_step, flush_secs=FLUSH_SECONDS)
    return RunBoard(writer)


def matrix_image(values: list) -> np.ndarray:
    """A (rows, cols) list of weights in [0, 1] (a 3-d list is flattened to rows × last two)
    as an HWC uint8 heat image, each entry a 12 × 12 pixel square (bright = large)."""
    a = np.asarray(values, dtype=np.float32)
    a = a.reshape(a.shape[0], -1) if a.ndim == 3 else a
    a = np.nan_to_num(a / max(float(np.nanmax(a)), 1e-12))
    a = np.kron(a, np.ones((12, 12), dtype=np.float32))
    # a dark-blue → yellow ramp: readable without a colour map
    rgb = np.stack([a, 0.2 + 0.7 * a, 0.5 * (1 - a)], axis=-1)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


class RunBoard:
    """Writes a run's records as TensorBoard summaries (rank 0 only: the caller decides)."""

    def __init__(self, writer) -> None:
        self.writer = writer

    def step(self, record: dict[str, Any]) -> None:
        """A metrics.jsonl step record: each number as ``train/<field>``."""
        step = record["step"]
        for key, value in record.items():
            if key not in ("kind", "step", "epoch") and _number(value):
                self.writer.add_scalar(f"train/{key}", value, step)

    def epoch(self, step: int, record: dict[str, Any]) -> None:
        """An epoch record (validation and, for the search, the architecture's summaries)."""
        w = self.writer
        for key, value in record.items():
            group = "val" if key.startswith("val_") else "arch"
            if _number(value):
                w.add_scalar(f"{group}/{key}", value, step)
            elif isinstance(value, dict) and key != "genotype":
                for sub, v in value.items():
                    if _number(v):
                        w.add_scalar(f"{group}/{key}/{sub}", v, step)
            elif key in MATRICES and value:
                w.add_image(MATRICES[key], matrix_image(value), step, dataformats="HWC")
                w.add_histogram(MATRICES[key], np.asarray(value, dtype=np.float32), step)
            elif key in HISTOGRAMS and value:
                w.add_histogram(HISTOGRAMS[key], np.asarray(value, dtype=np.float32), step)
        if isinstance(record.get("genotype"), dict):
            self.genotype(step, record["genotype"])

    def genotype(self, step: int, genotype: dict) -> None:
        """The genotype as markdown text ``genotype``: cell blocks, path, F, B, L."""
        cell = genotype["cell"]
        lines = [
            f"block {k // 2 + 1}: {op} ← {_input_name(src)}" for k, (op, src) in enumerate(cell)
        ]
        path = " ".join(str(level) for level in genotype["path"])
        sizes = ", ".join(
            f"{k} {genotype[k]}" for k in ("filter_multiplier", "block_multiplier", "layers")
            if k in genotype
        )  # fmt: skip
        text = "  \n".join([*lines, f"path (levels, 0 = /4 … 3 = /32): {path}", sizes])
        self.writer.add_text("genotype", text, step)

    def plots(self, step: int, plots_dir: Path) -> None:
        """Every PNG in ``plots_dir`` as an image ``plots/<stem>``."""
        from PIL import Image

        for png in sorted(plots_dir.glob("*.png")):
            with Image.open(png) as im:
                pixels = np.asarray(im.convert("RGB"))
            self.writer.add_image(f"plots/{png.stem}", pixels, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _input_name(source: int) -> str:
    """A cell input's name: H^{l-2}, H^{l-1}, or block j's output."""
    return ("H^{l-2}", "H^{l-1}")[source] if source < 2 else f"block {source - 1}"
