"""The Auto-DeepLab search loop (shared/AUTO_DEEPLAB.md §3), readable top to bottom.

One iteration: an SGD step on the weights w with a trainA batch, then (from
``arch_start_epoch`` on) an Adam step on α and β with a trainB batch. Validation mIoU, the
decoded genotype, plots and an atomic checkpoint follow every epoch.

    python -m fastadl.search                                  # tiny preset, synthetic data
    torchrun --nproc_per_node=2 -m fastadl.search --preset tiny   # several processes
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from fastadl.data import subset
from fastadl.data.split import load_split, make_split, save_split
from fastadl.engine import distributed as dist
from fastadl.engine.architect import Architect
from fastadl.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fastadl.engine.config import SearchConfig
from fastadl.engine.evaluation import evaluate_miou
from fastadl.engine.loading import SeededItems, batches_per_epoch, build_datasets, epoch_loader
from fastadl.engine.metrics_log import MetricsLog, truncate_after
from fastadl.engine.precision import Precision
from fastadl.engine.run_dir import write_run_files
from fastadl.engine.steps import weight_step
from fastadl.nn import SuperNet


def cosine_lr(step: int, total: int, lr_max: float, lr_min: float) -> float:
    """Cosine decay lr_max → lr_min over ``total`` steps: a pure function of the step."""
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * min(step, total) / total))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def frozen(params: list[nn.Parameter]):
    """Temporarily stop gradients to ``params`` (the weight step needs none for α and β)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


@dataclass
class SearchResult:
    run_dir: Path
    step: int
    epoch: int
    val_miou: list[float]


def run_search(
    cfg: SearchConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> SearchResult:
    """Run (or resume) a search into ``run_dir``; returns where it stopped."""
    run_dir = Path(run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = dist.init_distributed(resolve_device(cfg.device))
    main = dist.is_main_process()
    torch.manual_seed(cfg.seed)  # same initial weights, α and β on every rank

    # --- data: two disjoint halves of the training set, fixed by seed and saved with the run
    train_set, val_set = build_datasets(cfg)
    split_path = run_dir / "split.json"
    if resume:
        split = load_split(split_path, train_set.ids)
    else:
        split = make_split(train_set.ids, cfg.seed)
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_split(split_path, split)
            write_run_files(run_dir, cfg)
    items_a = SeededItems(subset(train_set, split["trainA"]), cfg.seed)
    items_b = SeededItems(subset(train_set, split["trainB"]), cfg.seed + 1)
    steps_per_epoch = min(
        batches_per_epoch(len(items_a), cfg.batch_size),
        batches_per_epoch(len(items_b), cfg.batch_size),
    )
    if steps_per_epoch < 1:
        raise ValueError(
            f"trainA/trainB hold {len(items_a)}/{len(items_b)} images: too few for batch_size "
            f"{cfg.batch_size} on {dist.world_size()} process(es)"
        )
    total_steps = steps_per_epoch * cfg.epochs

    # --- model and optimizers
    model = SuperNet(
        train_set.num_classes,
        layers=cfg.layers,
        filter_multiplier=cfg.filter_multiplier,
        block_multiplier=cfg.block_multiplier,
        backend=cfg.backend,
        recompute=cfg.recompute,
    ).to(device)
    precision = Precision(cfg.amp, device.type)
    arch_params = model.arch_parameters()
    weight_params = model.weight_parameters()
    w_opt = torch.optim.SGD(
        weight_params, lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay
    )
    w_scaler = precision.make_scaler()
    architect = Architect(
        model,
        arch_params,
        cfg.arch_lr,
        (cfg.arch_beta1, cfg.arch_beta2),
        cfg.arch_weight_decay,
        precision,
    )
    forward = model
    if dist.world_size() > 1:
        # α/β are left out of DDP (requires_grad off while wrapping): the weight step never
        # needs them and the architecture step averages their gradients itself.
        with frozen(arch_params):
            forward = nn.parallel.DistributedDataParallel(model)
    if cfg.compile:
        forward = torch.compile(forward)

    # --- resume
    epoch, position, step = 0, 0, 0
    log = MetricsLog(run_dir / "metrics.jsonl") if main else None
    val_history: list[float] = []
    if resume:
        state = load_checkpoint(run_dir, map_location=device)
        model.load_state_dict(state["model"])
        w_opt.load_state_dict(state["w_opt"])
        w_scaler.load_state_dict(state["w_scaler"])
        architect.load_state_dict(state["architect"])
        epoch, position, step = state["epoch"], state["position"], state["step"]
        val_history = list(state["val_miou"])
        set_rng_state(state["rng"])
        if main:
            truncate_after(run_dir / "metrics.jsonl", "step", step)

    def checkpoint(name: str) -> None:
        if not main:
            return
        state = {
            "model": model.state_dict(),
            "w_opt": w_opt.state_dict(),
            "w_scaler": w_scaler.state_dict(),
            "architect": architect.state_dict(),
            "epoch": epoch,
            "position": position,
            "step": step,
            "val_miou": val_history,
            "rng": rng_state(),
            "config": cfg.to_dict(),
            "split": split,
        }
        save_checkpoint(run_dir, state, name)

    # --- the search
    stop = False
    while epoch < cfg.epochs and not stop:
        model.train()
        pin = device.type == "cuda"
        loader_a = epoch_loader(items_a, cfg.batch_size, epoch, position, cfg.workers, pin)
        loader_b = epoch_loader(items_b, cfg.batch_size, epoch, position, cfg.workers, pin)
        search_arch = epoch >= cfg.arch_start_epoch
        bar = tqdm(
            total=steps_per_epoch,
            initial=position,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (progress and main),
            dynamic_ncols=True,
        )
        t0, seen = time.perf_counter(), 0
        for (xa, ya), (xb, yb) in zip(loader_a, loader_b, strict=False):
            if position >= steps_per_epoch:
                break
            xa, ya = xa.to(device, non_blocking=True), ya.to(device, non_blocking=True)
            lr = cosine_lr(step, total_steps, cfg.w_lr, cfg.w_lr_min)
            for g in w_opt.param_groups:
                g["lr"] = lr

            # weight step on trainA: gradients for w only
            with frozen(arch_params):
                loss = weight_step(
                    forward,
                    xa,
                    ya,
                    w_opt,
                    w_scaler,
                    precision,
                    weight_params,
                    step + 1,
                    cfg.accumulate,
                    cfg.grad_clip,
                )

            # architecture step on trainB: gradients for α and β only
            arch_loss = None
            if search_arch:
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                arch_loss = architect.step(xb, yb, step + 1, cfg.accumulate)

            step += 1
            position += 1
            seen += xa.shape[0] * dist.world_size()
            ips = seen / (time.perf_counter() - t0)
            record = {"kind": "step", "step": step, "epoch": epoch + 1, "loss": loss, "lr": lr}
            if arch_loss is not None:
                record["arch_loss"] = arch_loss
            record["images_per_s"] = ips
            if log:
                log.append(record)
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

        # end of epoch: validate, decode, plot, checkpoint
        epoch, position = epoch + 1, 0
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
            genotype = model.genotype()
            genotype.save(run_dir / "genotype.json")
            log.append(
                {
                    "kind": "epoch",
                    "step": step,
                    "epoch": epoch,
                    "val_miou": miou,
                    "val_pixel_acc": acc,
                    "genotype": genotype.to_dict(),
                }
            )
            save_plots(run_dir, model, genotype.path, log.path)
            if progress:
                tqdm.write(f"epoch {epoch}: val mIoU {miou:.4f}  path {list(genotype.path)}")
        checkpoint(f"epoch_{epoch:04d}")
    dist.barrier()
    return SearchResult(run_dir=run_dir, step=step, epoch=epoch, val_miou=val_history)


def save_plots(run_dir: Path, model: SuperNet, path: tuple[int, ...], metrics_path: Path) -> None:
    """β trellis with the decoded path, α per edge, loss/mIoU curves → run_dir/plots/*.png."""
    from fastadl.engine.metrics_log import read
    from fastadl.engine.plots import plot_alphas, plot_betas, plot_curves

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    with torch.no_grad():
        nb = model.normalized_betas().cpu()
        plot_betas(nb, path, plots / "betas.png")
        plot_alphas(model.alphas.detach().cpu(), model.primitives, plots / "alphas.png")
    plot_curves(read(metrics_path), plots / "curves.png")
