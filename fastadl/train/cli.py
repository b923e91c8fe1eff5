"""``python -m fastadl.train``: retrain the network a genotype describes (SGD, poly LR,
drop-path; docs/METHOD.md §5) and write config.json, genotype.json, metrics.jsonl,
checkpoints/ and plots/curves.png into the run directory.

examples:
  python -m fastadl.train                        # tiny preset: the tiny model on synthetic data
  python -m fastadl.train --genotype runs/search-X --model S --out runs/train-S
  python -m fastadl.train --preset cityscapes --data-root /data/cityscapes --model L
  torchrun --nproc_per_node=8 --max-restarts=3 -m fastadl.train --preset cityscapes --out runs/L
"""

from __future__ import annotations

from fastadl.runtime.cli import LoopCLI
from fastadl.train import config


def run_train(cfg, run_dir, **kwargs):
    """fastadl/train/trainer.py's ``run_train``, imported once the arguments are known (keeps
    ``--help`` free of torch)."""
    from fastadl.train.trainer import run_train as run

    return run(cfg, run_dir, **kwargs)


CLI = LoopCLI.of(__doc__, config, run_train, "checkpoints")
main = CLI.main
