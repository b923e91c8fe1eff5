"""Validate a training checkpoint as trained, then again after re-estimating every BatchNorm's
running statistics over one epoch of its training crops (a cumulative average): tells stale
running averages (e.g. TF's momentum 3e-4 on a short run) apart from weights that did not learn.

    python scripts/bn_recalibration.py RUN_DIR [--threads N]

Prints the validation mIoU and pixel accuracy of both; the checkpoint is not modified.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a training run directory or checkpoint file")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)
    import torch

    from fastadl.deploy.inference import model_from_checkpoint
    from fastadl.nn.batchnorm import batchnorms
    from fastadl.runtime.cli import fail, user_message
    from fastadl.runtime.loading import SeededItems, build_datasets, epoch_loader
    from fastadl.runtime.precision import Precision
    from fastadl.runtime.validation import validation_scores

    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    try:
        loaded = model_from_checkpoint(args.checkpoint, cpu)
        cfg, model = loaded.config, loaded.model
        train, val = build_datasets(cfg)
    except (OSError, ValueError) as e:  # CheckpointError, ConfigError, DatasetError, ...
        return fail(user_message(e))
    precision = Precision("off", "cpu")
    miou, acc = validation_scores(model, val, cfg, cpu, precision)
    print(f"as trained:   mIoU {miou:.4f}  pixel accuracy {acc:.4f}")
    for bn in batchnorms(model):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over every batch below
    model.train()
    with torch.no_grad():
        for images, _ in epoch_loader(SeededItems(train, cfg.seed), cfg.batch_size, 0, 0, 0, False):
            model(images)
    miou, acc = validation_scores(model, val, cfg, cpu, precision)
    print(f"recalibrated: mIoU {miou:.4f}  pixel accuracy {acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
