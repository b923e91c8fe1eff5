"""Retraining the derived network (shared/AUTO_DEEPLAB.md §5), readable top to bottom.

One step: an SGD (momentum 0.9) step with poly learning rate on a batch of random crops. The
drop-path probability grows with training progress; validation mIoU, plots and an atomic
checkpoint follow every epoch. Same loading, checkpointing and resume as the search.

    python -m fastadl.train                                           # tiny preset, synthetic
    python -m fastadl.train --preset cityscapes --model L --genotype runs/search/genotype.json
    torchrun --nproc_per_node=2 -m fastadl.train --out runs/ddp       # several processes
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from fastadl.engine import distributed as dist
from fastadl.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fastadl.engine.evaluation import evaluate_miou
from fastadl.engine.inference import build_model, load_genotype, load_weights
from fastadl.engine.loading import SeededItems, batches_per_epoch, build_datasets, epoch_loader
from fastadl.engine.metrics_log import MetricsLog, read, truncate_after
from fastadl.engine.plots import plot_curves
from fastadl.engine.precision import Precision
from fastadl.engine.run_dir import write_run_files
from fastadl.engine.searcher import resolve_device
from fastadl.engine.steps import weight_step
from fastadl.engine.train_config import TrainConfig
from fastadl.genotype import Genotype


def poly_lr(step: int, total: int, base_lr: float, power: float = 0.9) -> float:
    """DeepLab's poly schedule base·(1 - step/total)^power: a pure function of the step."""
    return base_lr * (1.0 - min(step, total) / total) ** power


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    val_miou: list[float]


def run_train(
    cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train (or resume training) into ``run_dir``; returns where it stopped.

    The genotype is ``cfg.genotype`` for a new run and the checkpoint's own on resume (the
    weights were trained for it). Raises GenotypeError, DatasetError, CheckpointError or
    NonFiniteError (the last checkpoint is then intact) with a message naming the cause.
    """
    run_dir = Path(run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = dist.init_distributed(resolve_device(cfg.device))
    main = dist.is_main_process()
    torch.manual_seed(cfg.seed)  # same initial weights on every rank

    state = load_checkpoint(run_dir, map_location=device) if resume else None
    if state is not None:
        genotype = Genotype.from_dict(state["genotype"], source=f"{run_dir} checkpoint")
    else:
        genotype = load_genotype(cfg.genotype)

    # --- data
    train_set, val_set = build_datasets(cfg)
    items = SeededItems(train_set, cfg.seed)
    steps_per_epoch = batches_per_epoch(len(items), cfg.batch_size)
    if steps_per_epoch < 1:
        raise ValueError(
            f"the training set holds {len(items)} images: too few for batch_size "
            f"{cfg.batch_size} on {dist.world_size()} process(es)"
        )
    total_steps = steps_per_epoch * cfg.epochs

    # --- model and optimizer
    model = build_model(cfg, genotype, train_set.num_classes).to(device)
    if main and not resume:
        write_run_files(run_dir, cfg)
        genotype.save(run_dir / "genotype.json")
    precision = Precision(cfg.amp, device.type)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = precision.make_scaler()
    forward: nn.Module = model
    if dist.world_size() > 1:
        forward = nn.parallel.DistributedDataParallel(model)
    if cfg.compile:
        forward = torch.compile(forward)

    # --- resume
    epoch, position, step = 0, 0, 0
    log = MetricsLog(run_dir / "metrics.jsonl") if main else None
    val_history: list[float] = []
    if state is not None:
        load_weights(model, state["model"], f"{run_dir} checkpoint")
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        epoch, position, step = state["epoch"], state["position"], state["step"]
        val_history = list(state["val_miou"])
        set_rng_state(state["rng"])
        if main:
            truncate_after(run_dir / "metrics.jsonl", "step", step)

    def checkpoint(name: str) -> None:
        if not main:
            return
        save_checkpoint(
            run_dir,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "position": position,
                "step": step,
                "val_miou": val_history,
                "rng": rng_state(),
                "config": cfg.to_dict(),
                "genotype": genotype.to_dict(),
                "class_names": list(train_set.class_names),
                "palette": [list(c) for c in train_set.palette],
            },
            name,
        )

    # --- training
    stop = False
    while epoch < cfg.epochs and not stop:
        model.train()
        loader = epoch_loader(
            items, cfg.batch_size, epoch, position, cfg.workers, device.type == "cuda"
        )
        # Starting a DataLoader draws a worker seed from the global RNG. The items reseed
        # themselves (SeededItems), so keep that draw out of the global stream: a resumed run
        # (which starts a loader mid-epoch) then replays drop-path's random numbers exactly.
        with torch.random.fork_rng(devices=[]):
            batches = iter(loader)
        bar = tqdm(
            total=steps_per_epoch,
            initial=position,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (progress and main),
            dynamic_ncols=True,
        )
        t0, seen = time.perf_counter(), 0
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            lr = poly_lr(step, total_steps, cfg.lr, cfg.lr_power)
            for g in opt.param_groups:
                g["lr"] = lr
            model.set_drop_path_progress(step / total_steps)
            loss = weight_step(
                forward,
                x,
                y,
                opt,
                scaler,
                precision,
                params,
                step + 1,
                cfg.accumulate,
                cfg.grad_clip,
            )
            step += 1
            position += 1
            seen += x.shape[0] * dist.world_size()
            ips = seen / (time.perf_counter() - t0)
            if log:
                log.append(
                    {
                        "kind": "train",
                        "step": step,
                        "epoch": epoch + 1,
                        "loss": loss,
                        "lr": lr,
                        "images_per_s": ips,
                    }
                )
            postfix = {"loss": f"{loss:.3f}", "img/s": f"{ips:.1f}"}
            if val_history:
                postfix["mIoU"] = f"{val_history[-1]:.3f}"
            bar.set_postfix(postfix)
            bar.update()
            if cfg.max_steps and step >= cfg.max_steps:
                stop = True
                break
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                checkpoint(f"step_{step:08d}")
        bar.close()
        if stop and position < steps_per_epoch:
            checkpoint(f"step_{step:08d}")
            break

        # end of epoch: validate, plot, checkpoint
        epoch, position = epoch + 1, 0
        if epoch % cfg.val_every == 0 or epoch == cfg.epochs:
            miou, acc = evaluate_miou(
                model,
                val_set,
                cfg.val_batch_size or cfg.batch_size,
                cfg.workers,
                device,
                precision,
                limit=cfg.val_images,
            )
            val_history.append(miou)
            if main:
                log.append(
                    {
                        "kind": "epoch",
                        "step": step,
                        "epoch": epoch,
                        "val_miou": miou,
                        "val_pixel_acc": acc,
                    }
                )
                (run_dir / "plots").mkdir(exist_ok=True)
                plot_curves(read(log.path), run_dir / "plots" / "curves.png")
                if progress:
                    tqdm.write(f"epoch {epoch}: val mIoU {miou:.4f}  pixel acc {acc:.4f}")
        checkpoint(f"epoch_{epoch:04d}")
    dist.barrier()
    return TrainResult(run_dir=run_dir, step=step, epoch=epoch, val_miou=val_history)
