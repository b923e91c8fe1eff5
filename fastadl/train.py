"""``python -m fastadl.train``: retrain an Auto-DeepLab network from a genotype.

python -m fastadl.train                                   # tiny preset: tiny model, synthetic data
python -m fastadl.train --genotype runs/search-X/genotype.json --model S --out runs/train-S
python -m fastadl.train --preset cityscapes --data-root /data/cityscapes --model L
python -m fastadl.train --resume runs/train-S
torchrun --nproc_per_node=2 --max-restarts=3 -m fastadl.train --out runs/ddp
"""

from __future__ import annotations

import sys

from fastadl.cli_common import LoopCLI, run_loop_cli
from fastadl.cli_common import build_parser as _build_parser
from fastadl.engine.train_config import PRESETS, TrainConfig


def _summary(result, run_dir) -> str:
    miou = f"{result.val_miou[-1]:.4f}" if result.val_miou else "n/a"
    return (
        f"training stopped at step {result.step} (epoch {result.epoch}); val mIoU {miou}; "
        f"checkpoints: {run_dir / 'checkpoints'}"
    )


CLI = LoopCLI(
    prog="python -m fastadl.train",
    description=(
        "Retrain the network a genotype describes (SGD, poly LR, drop-path). Writes "
        "config.json, genotype.json, metrics.jsonl, checkpoints/ and plots/curves.png into the "
        "run directory. Exit status: 0 done, 2 bad input, 3 NaN/inf loss, 4 stopped by "
        "SIGTERM/SIGINT after a checkpoint (resume with --resume RUN_DIR)."
    ),
    kind="train",
    config_cls=TrainConfig,
    presets=PRESETS,
    default_preset="tiny",
    preset_help="tiny: a few CPU minutes on synthetic data; cityscapes/voc/ade20k: the paper's "
    "setting",
    run="fastadl.engine.trainer:run_train",
    summary=_summary,
)


def build_parser(argv: list[str] | None = None):
    return _build_parser(CLI, argv)


def main(argv: list[str] | None = None) -> int:
    return run_loop_cli(CLI, argv)


if __name__ == "__main__":
    sys.exit(main())
