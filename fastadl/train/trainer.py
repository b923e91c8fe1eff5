"""Retraining the derived network (docs/METHOD.md §5), readable top to bottom.

One step: an SGD (momentum 0.9) step with poly learning rate on a batch of random crops. The
drop-path probability grows with training progress; validation mIoU and plots follow every
``val_every`` epochs. Steps, checkpoints, resume, signals and the progress bar are the shared
loop's (loop.py).

    python -m fastadl.train                                           # tiny preset, synthetic
    python -m fastadl.train --preset cityscapes --model L --genotype runs/search/genotype.json
    torchrun --nproc_per_node=2 -m fastadl.train --out runs/ddp       # several processes
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from fastadl.runtime import distributed as dist
from fastadl.runtime.loading import SeededItems, batches_per_epoch, build_datasets, epoch_loader
from fastadl.runtime.loop import LoopResult, load_latest, load_state_dicts, run_loop, state_dicts
from fastadl.runtime.precision import Precision
from fastadl.runtime.rundir.checkpoint import load_module_state
from fastadl.runtime.rundir.metrics_log import read
from fastadl.runtime.rundir.plots import plot_curves
from fastadl.runtime.steps import FiniteWatch, set_lr, sgd, weight_step
from fastadl.runtime.validation import validation_scores
from fastadl.space.genotype import Genotype, GenotypeError
from fastadl.train.config import TrainConfig
from fastadl.train.model import build_model, load_genotype

# Below this a retraining is said to be too short at its start (the tiny preset: 2,000; on the
# 12-cell paper genotype 800 steps reached only 0.22 mIoU, README).
MIN_TRAIN_STEPS = 500


def poly_lr(step: int, total: int, base_lr: float, power: float = 0.9) -> float:
    """DeepLab's poly schedule base·(1 - step/total)^power: a pure function of the step."""
    return base_lr * (1.0 - min(step, total) / total) ** power


class Training:
    """Retraining as a loop task (loop.LoopTask): the derived network and its SGD."""

    record_kind = "train"

    def __init__(self, cfg: TrainConfig, run_dir: Path, device: torch.device, genotype: Genotype):
        self.cfg, self.run_dir, self.device, self.genotype = cfg, run_dir, device, genotype
        torch.manual_seed(cfg.seed)  # same initial weights on every rank

        # --- data
        train_set, self.val_set = build_datasets(cfg)
        self.items = SeededItems(train_set, cfg.seed)
        self.steps_per_epoch = batches_per_epoch(len(self.items), cfg.batch_size)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training set holds {len(self.items)} images: too few for batch_size "
                f"{cfg.batch_size} on {dist.world_size()} process(es)"
            )
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.class_names = list(train_set.class_names)
        self.palette = [list(c) for c in train_set.palette]

        # --- model and optimizer
        self.model = build_model(cfg, genotype, train_set.num_classes).to(device)
        self.precision = Precision(cfg.amp, device.type)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = sgd(self.params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.scaler = self.precision.make_scaler()
        self.watch = FiniteWatch()  # non-finite values, read by the loop (loop.py)
        forward: nn.Module = self.model
        if dist.world_size() > 1:
            forward = nn.parallel.DistributedDataParallel(self.model)
        self.forward = torch.compile(forward) if cfg.compile else forward

    def schedule_warning(self) -> str | None:
        """Fewer than MIN_TRAIN_STEPS steps (the tiny preset takes 2,000)."""
        cfg, spe = self.cfg, self.steps_per_epoch
        if self.total_steps >= MIN_TRAIN_STEPS:
            return None
        return (
            f"short schedule: {spe} steps per epoch (the training set holds {len(self.items)} "
            f"images, batch size {cfg.batch_size} per process) × {cfg.epochs} epochs = "
            f"{self.total_steps} steps; a training this short often stays at the all-background "
            f"prediction. For at least {MIN_TRAIN_STEPS} steps: --epochs "
            f"{math.ceil(MIN_TRAIN_STEPS / spe)} (or a smaller --batch-size, more training images)"
        )

    def batches(self, epoch: int, start: int):
        self.model.train()
        cfg, pin = self.cfg, self.device.type == "cuda"
        return epoch_loader(self.items, cfg.batch_size, epoch, start, cfg.workers, pin)

    def train_step(self, batch, step: int) -> dict:
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        lr = poly_lr(step, self.total_steps, self.cfg.lr, self.cfg.lr_power)
        set_lr(self.opt, lr)
        self.model.set_drop_path_progress(step / self.total_steps)
        loss = weight_step(
            self.forward,
            x,
            y,
            self.opt,
            self.scaler,
            self.precision,
            self.params,
            step + 1,
            self.cfg.accumulate,
            self.cfg.grad_clip,
            self.watch,
        )
        return {"loss": loss, "lr": lr, "images": x.shape[0]}

    def validate(self, epoch: int) -> dict | None:
        cfg = self.cfg
        if epoch % cfg.val_every and epoch != cfg.epochs:
            return None
        miou, acc = validation_scores(self.model, self.val_set, cfg, self.device, self.precision)
        return {"val_miou": miou, "val_pixel_acc": acc}

    def report(self, epoch: int, record: dict, metrics_path: Path) -> str:
        (self.run_dir / "plots").mkdir(exist_ok=True)
        plot_curves(read(metrics_path), self.run_dir / "plots" / "curves.png")
        return f"pixel acc {record['val_pixel_acc']:.4f}"

    def state_dict(self) -> dict:
        # class names and palette: evaluate/predict rebuild the network from this file alone
        extra = {"genotype": self.genotype.to_dict(), "class_names": self.class_names}
        optimizers = state_dicts(optimizer=self.opt, scaler=self.scaler)
        return {"model": self.model.state_dict(), **optimizers, **extra, "palette": self.palette}

    def load_state_dict(self, state: dict) -> None:
        load_module_state(self.model, state["model"], "model")
        load_state_dicts(state, optimizer=self.opt, scaler=self.scaler)


def run_train(
    cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> LoopResult:
    """Train (or continue training) into ``run_dir``; returns where it stopped.

    The genotype is ``cfg.genotype`` for a new run and the checkpoint's own on resume (the
    weights were trained for it). Raises GenotypeError, DatasetError, CheckpointError,
    NonFiniteError (the last checkpoint is then intact) or Preempted (after a checkpoint).
    """
    run_dir = Path(run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = dist.init_distributed(dist.resolve_device(cfg.device))
    loaded = load_latest(run_dir, device) if resume else None
    if loaded is not None:
        path, state = loaded
        genotype = Genotype.from_dict(state.get("genotype"), source=f"{path} (genotype)")
    else:
        genotype = load_genotype(cfg.genotype)
    try:
        task = Training(cfg, run_dir, device, genotype)
    except GenotypeError as e:  # e.g. a path too short for the decoder: name where it came from
        source = f"{path} (genotype)" if loaded is not None else f"genotype {cfg.genotype}"
        raise GenotypeError(f"{source}: {e}") from None
    # Also on resume when it is missing (a run stopped before its first start wrote it):
    # genotype.json is what a study and the tools read to know what the run trained.
    if dist.is_main_process() and (loaded is None or not (run_dir / "genotype.json").is_file()):
        run_dir.mkdir(parents=True, exist_ok=True)
        genotype.save(run_dir / "genotype.json")
    return run_loop(task, cfg, run_dir, resume=resume, progress=progress, loaded=loaded)
