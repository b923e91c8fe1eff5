"""Search configuration: a frozen dataclass, named presets, and CLI-style overrides.

Numbers of the ``paper`` preset are shared/AUTO_DEEPLAB.md §3; ``tiny`` is sized to finish on a
2-core laptop CPU in a few minutes on the synthetic data.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A bad preset name, field name or field value."""


def config_from_dict(cls, d: Any, source: str, validate):
    """``cls(**d)`` validated, or a ConfigError naming ``source`` for a non-object or unknown field."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(d).__name__}")
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown}")
    return validate(cls(**d))


def apply_overrides(base, overrides: dict[str, Any], validate):
    """``base`` with ``overrides`` (field → value, None = keep) applied and validated."""
    unknown = sorted(set(overrides) - {f.name for f in fields(base)})
    if unknown:
        raise ConfigError(f"unknown config field(s) {unknown}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return validate(dataclasses.replace(base, **changes))


@dataclass(frozen=True)
class SearchConfig:
    # data
    data: str = "synthetic"
    data_root: str | None = None
    crop_size: int = 321
    scale_min: float = 0.5
    scale_max: float = 2.0
    num_images: int = 0  # synthetic only: images in the training set (0 = dataset default)
    image_size: int = 0  # synthetic only: side of the generated images (0 = dataset default)
    val_images: int = 0  # cap on validation images (0 = all)
    # search space
    layers: int = 12
    filter_multiplier: int = 8
    block_multiplier: int = 5
    backend: str = "auto"
    # schedule
    epochs: int = 40
    arch_start_epoch: int = 20  # α/β updates begin after this many epochs
    batch_size: int = 2
    accumulate: int = 1  # micro-batches per step (batch_size must divide by it)
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float = 5.0  # DARTS' weight-gradient clip (the paper is silent; 0 disables)
    arch_lr: float = 3e-3
    arch_beta1: float = 0.9
    arch_beta2: float = 0.999
    arch_weight_decay: float = 1e-3
    # run
    seed: int = 0
    workers: int = 2
    amp: str = "off"  # off | bf16 | fp16
    compile: bool = False
    recompute: bool = False  # keep only cell inputs for backward, recompute the rest (less memory)
    device: str = "auto"
    threads: int = 0  # torch intra-op CPU threads per process (0 = torch's default)
    max_steps: int = 0  # stop (with a checkpoint) after this many weight steps; 0 = run all epochs
    checkpoint_every: int = 0  # also checkpoint every N steps (0 = at epoch ends only)
    val_batch_size: int = 0  # 0 = batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> SearchConfig:
        return config_from_dict(cls, d, source, validate)


PRESETS: dict[str, SearchConfig] = {
    # The paper's Cityscapes setting (§3): half-resolution train_fine, 321 crops, batch 2, F = 8.
    "paper": SearchConfig(data="cityscapes"),
    # A few CPU minutes on the synthetic scenes: a shallower, thinner trellis, same method.
    "tiny": SearchConfig(
        data="synthetic",
        crop_size=64,
        scale_min=0.75,
        scale_max=1.25,
        num_images=400,
        image_size=64,
        val_images=100,
        layers=4,
        filter_multiplier=4,
        block_multiplier=3,
        epochs=6,
        arch_start_epoch=2,
        batch_size=8,
        w_lr=0.05,
        # One loader process and one compute thread: on a 2-core machine that also runs other
        # work, OpenMP threads waiting on each other make a step several times slower.
        workers=1,
        threads=1,
    ),
}


def validate(cfg: SearchConfig) -> SearchConfig:
    """Raise ConfigError naming the field for a value the search cannot run with."""
    positive = (
        "crop_size",
        "layers",
        "filter_multiplier",
        "block_multiplier",
        "epochs",
        "batch_size",
    )
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.arch_start_epoch <= cfg.epochs:
        raise ConfigError(
            f"arch_start_epoch must be in 0..epochs ({cfg.epochs}), got {cfg.arch_start_epoch}"
        )
    if cfg.accumulate < 1 or cfg.batch_size % cfg.accumulate:
        raise ConfigError(
            f"accumulate must be >= 1 and divide batch_size ({cfg.batch_size}), got {cfg.accumulate}"
        )
    if cfg.amp not in ("off", "bf16", "fp16"):
        raise ConfigError(f"amp must be off, bf16 or fp16, got {cfg.amp!r}")
    if cfg.backend not in ("auto", "reference", "fused", "triton"):
        raise ConfigError(f"backend must be auto, reference, fused or triton, got {cfg.backend!r}")
    if not 0 < cfg.scale_min <= cfg.scale_max:
        raise ConfigError(f"need 0 < scale_min <= scale_max, got {cfg.scale_min}, {cfg.scale_max}")
    return cfg


def resolve(preset: str, overrides: dict[str, Any]) -> SearchConfig:
    """The preset with ``overrides`` (field → value, None = keep) applied and validated."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return resolve_from(PRESETS[preset], overrides)


def resolve_from(base: SearchConfig, overrides: dict[str, Any]) -> SearchConfig:
    """``base`` with ``overrides`` applied (e.g. a saved config and more epochs on resume)."""
    return apply_overrides(base, overrides, validate)
