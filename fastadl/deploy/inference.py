"""The retrained network from a training checkpoint, and multi-scale inference.

A training checkpoint holds everything needed to rebuild its network without the dataset: the
config (model preset, drop-path), the genotype, the class names and palette, all plain values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from fastadl.nn.derived.autodeeplab import AutoDeepLab
from fastadl.runtime.rundir.checkpoint import CheckpointError, load_checkpoint, load_module_state
from fastadl.space.genotype import Genotype
from fastadl.train.config import TrainConfig
from fastadl.train.model import build_model

DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # DeepLab's multi-scale evaluation


@dataclass
class LoadedModel:
    model: AutoDeepLab
    config: TrainConfig
    genotype: Genotype
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    run_dir: Path | None  # the run directory the checkpoint belongs to, when it is in one
    step: int


def model_from_checkpoint(path: str | os.PathLike, device: torch.device) -> LoadedModel:
    """Rebuild the trained network from a run directory (its latest checkpoint), a checkpoint
    file or a model folder (pretrained.py).

    Raises CheckpointError / GenotypeError / ConfigError naming the file when it is not a
    training checkpoint or its weights do not fit its genotype.
    """
    path = Path(path)
    if path.is_dir() and (path / "model.safetensors").is_file():
        # a model folder (pretrained.py, which imports this module: hence imported here)
        from fastadl.deploy.pretrained import from_pretrained

        return from_pretrained(path, device)
    state = load_checkpoint(path, map_location="cpu")
    missing = [k for k in ("model", "config", "genotype", "class_names") if k not in state]
    if missing and "architect" in state:  # what fastadl/search/searcher.py saves
        raise CheckpointError(
            f"{path} is a search checkpoint, not a retrained network: retrain its genotype "
            "first (python -m fastadl.train --genotype SEARCH_RUN_DIR)"
        )
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint (no {', '.join(missing)})")
    cfg = TrainConfig.from_dict(state["config"], source=f"{path} (config)")
    genotype = Genotype.from_dict(state["genotype"], source=f"{path} (genotype)")
    names = list(state["class_names"])
    model = build_model(cfg, genotype, len(names))
    try:
        load_module_state(model, state["model"], "model")
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model.to(device).eval()
    if path.is_dir():
        run_dir = path.parent if path.name == "checkpoints" else path
    else:
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    palette = [tuple(int(v) for v in c) for c in state.get("palette", [])]
    return LoadedModel(model, cfg, genotype, names, palette, run_dir, int(state.get("step", 0)))


class MultiScaleInference(nn.Module):
    """Class probabilities averaged over input scales (and horizontal flips).

    x: (N, 3, H, W) → (N, K, H, W) softmax probabilities; each scale's logits are resized back
    to (H, W) bilinearly before the softmax average (DeepLab's multi-scale evaluation).
    """

    def __init__(self, model: nn.Module, scales: Sequence[float] = (1.0,), flip: bool = False):
        super().__init__()
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales must be positive, got {list(scales)}")
        self.model = model
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        total = None
        n = 0
        for s in self.scales:
            size = (max(1, round(H * s)), max(1, round(W * s)))
            xs = x if size == (H, W) else F.interpolate(x, size, mode="bilinear")
            for flipped in (False, True) if self.flip else (False,):
                inp = xs.flip(-1) if flipped else xs
                logits = self.model(inp).float()
                if flipped:
                    logits = logits.flip(-1)
                if logits.shape[-2:] != (H, W):
                    logits = F.interpolate(logits, (H, W), mode="bilinear")
                probs = logits.softmax(1)
                total = probs if total is None else total + probs
                n += 1
        return total / n
