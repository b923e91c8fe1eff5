"""Retraining configuration: a frozen dataclass, named presets, and CLI-style overrides.

The ``cityscapes`` / ``voc`` / ``ade20k`` presets are the paper's retraining setting
(shared/AUTO_DEEPLAB.md §5: from scratch, poly LR from 0.05, 769 / 513 crops, batch 8); ``tiny``
(the default) retrains the tiny network on the synthetic scenes in a few CPU minutes.
Kept free of torch imports so ``python -m fastadl.train --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from fastadl.engine.config import ConfigError, apply_overrides, config_from_dict

MODELS = ("S", "M", "L", "tiny")  # fastadl.nn.autodeeplab.PRESETS


@dataclass(frozen=True)
class TrainConfig:
    # network
    # "paper", "paper:N" (its cell on the first N layers of its path), a genotype.json, or a
    # search run directory holding one
    genotype: str = "paper"
    model: str = "tiny"  # S | M | L (the paper's F = 20 / 32 / 48) | tiny (CPU)
    drop_path_prob: float = 0.0  # final scheduled drop-path probability (0 = off)
    # data
    data: str = "synthetic"
    data_root: str | None = None
    crop_size: int = 769
    scale_min: float = 0.5
    scale_max: float = 2.0
    num_images: int = 0  # synthetic only: images in the training set (0 = dataset default)
    image_size: int = 0  # synthetic only: side of the generated images (0 = dataset default)
    val_images: int = 0  # cap on validation images (0 = all)
    # schedule: lr = lr · (1 - step / total_steps) ** lr_power, total = epochs · steps per epoch
    epochs: int = 4032
    batch_size: int = 8  # per process; the global batch is batch_size · processes
    accumulate: int = 1  # micro-batches per step (batch_size must divide by it)
    lr: float = 0.05
    lr_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Global gradient-norm clip (0 disables). **Decision** (the paper is silent, §5): a 12-cell
    # chain of ReLU-conv-BN without skip connections starts with gradient norms in the hundreds
    # (mostly in the stem); unclipped SGD inflates those weights until BN's scale invariance
    # freezes them (the tiny run then never leaves the all-background plateau). DARTS' 5.
    grad_clip: float = 5.0
    # run
    seed: int = 0
    workers: int = 2
    amp: str = "off"  # off | bf16 | fp16
    compile: bool = False
    device: str = "auto"
    threads: int = 0  # torch intra-op CPU threads per process (0 = torch's default)
    max_steps: int = 0  # stop (with a checkpoint) after this many steps; 0 = run all epochs
    checkpoint_every: int = 0  # also checkpoint every N steps (0 = at epoch ends only)
    val_every: int = 1  # validate every N epochs (and always after the last)
    val_batch_size: int = 0  # 0 = batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        return config_from_dict(cls, d, source, validate)


# Cityscapes train_fine has 2,975 images: 371 steps of 8 per epoch, so the paper's 1.5 M
# iterations are ~4,032 epochs. Weight decay 1e-4 and drop-path 0.2 are **decisions** (the paper
# gives neither number; DeepLab's usual decay, a mild final drop-path), §5.
_PAPER = TrainConfig(model="L", drop_path_prob=0.2, val_batch_size=1, val_every=50)

PRESETS: dict[str, TrainConfig] = {
    "cityscapes": dataclasses.replace(_PAPER, data="cityscapes", crop_size=769),
    # VOC 2012 (1,464 train images) and ADE20K (20,210): 513 crops, same optimiser (§5).
    "voc": dataclasses.replace(_PAPER, data="voc", crop_size=513, epochs=8192),
    "ade20k": dataclasses.replace(_PAPER, data="ade20k", crop_size=513, epochs=600),
    # A few CPU minutes on the synthetic scenes: the tiny network, the paper's optimiser.
    "tiny": TrainConfig(
        # The paper's cell on the first 4 levels of its path: the full 12-cell chain trained
        # from scratch for 800 steps stays near the all-background plateau (mIoU 0.22).
        genotype="paper:4",
        model="tiny",
        data="synthetic",
        crop_size=64,
        scale_min=0.75,
        scale_max=1.25,
        image_size=64,
        num_images=400,
        val_images=100,
        epochs=40,
        batch_size=8,
        lr=0.05,
        weight_decay=1e-4,
        # One loader process: the crop transform runs single-threaded there, which on a busy
        # 2-core machine is ~50x faster than fighting the training step's threads for the cores.
        workers=1,
        # One compute thread: on a shared 2-core machine, OpenMP threads that wait on each other
        # make a step ~7x slower than one thread; an idle machine loses at most 2x.
        threads=1,
    ),
}


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ConfigError naming the field for a value training cannot run with."""
    for name in ("crop_size", "epochs", "batch_size", "val_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.model not in MODELS:
        raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {cfg.model!r}")
    if not cfg.genotype:
        raise ConfigError("genotype must be 'paper' or a genotype.json path")
    if not 0.0 <= cfg.drop_path_prob < 1.0:
        raise ConfigError(f"drop_path_prob must be in [0, 1), got {cfg.drop_path_prob}")
    if cfg.accumulate < 1 or cfg.batch_size % cfg.accumulate:
        raise ConfigError(
            f"accumulate must be >= 1 and divide batch_size ({cfg.batch_size}), got {cfg.accumulate}"
        )
    if cfg.lr <= 0 or cfg.lr_power <= 0:
        raise ConfigError(f"lr and lr_power must be > 0, got {cfg.lr}, {cfg.lr_power}")
    if cfg.amp not in ("off", "bf16", "fp16"):
        raise ConfigError(f"amp must be off, bf16 or fp16, got {cfg.amp!r}")
    if not 0 < cfg.scale_min <= cfg.scale_max:
        raise ConfigError(f"need 0 < scale_min <= scale_max, got {cfg.scale_min}, {cfg.scale_max}")
    for name in (
        "max_steps",
        "checkpoint_every",
        "val_batch_size",
        "val_images",
        "workers",
        "threads",
    ):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    return cfg


def resolve(preset: str, overrides: dict[str, Any]) -> TrainConfig:
    """The preset with ``overrides`` (field → value, None = keep) applied and validated."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return resolve_from(PRESETS[preset], overrides)


def resolve_from(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``base`` with ``overrides`` applied (e.g. a saved config and more epochs on resume)."""
    return apply_overrides(base, overrides, validate)
