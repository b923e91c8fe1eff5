"""The retrained network from a genotype or a training checkpoint, and multi-scale inference.

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

from fastadl.data.transforms import input_affine
from fastadl.nn.derived.autodeeplab import AutoDeepLab
from fastadl.runtime.rundir.checkpoint import CheckpointError, load_checkpoint, load_module_state
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype, GenotypeError
from fastadl.train.config import TrainConfig

DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # DeepLab's multi-scale evaluation


def paper_prefix(layers: int) -> Genotype:
    """The paper's cell on the first ``layers`` levels of the paper's path (3..12).

    **Decision** for CPU budgets (§5 retrains the full 12-cell network for 1.5 M iterations):
    a shorter chain of the same cell keeps the paper's cell and its first levels but trains
    from scratch in minutes instead of days.
    """
    n = len(PAPER_GENOTYPE.path)
    if not 3 <= layers <= n:
        raise GenotypeError(f"genotype paper:{layers}: paper:N needs 3 <= N <= {n} layers")
    return Genotype(cell=PAPER_GENOTYPE.cell, path=PAPER_GENOTYPE.path[:layers], layers=layers)


def load_genotype(spec: str | os.PathLike) -> Genotype:
    """A genotype from the command line's ``--genotype``.

    "paper": the paper's genotype; "paper:N": its cell on the first N layers of its path; a
    file: Genotype.load; a directory: its genotype.json (e.g. a search run). Raises
    GenotypeError naming the file.
    """
    text = str(spec)
    if text == "paper":
        return PAPER_GENOTYPE
    if text.startswith("paper:"):
        try:
            layers = int(text.removeprefix("paper:"))
        except ValueError:
            raise GenotypeError(f"genotype {text!r}: expected paper:N, N a layer count") from None
        return paper_prefix(layers)
    path = Path(spec)
    if path.is_dir():
        path = path / "genotype.json"
        if not path.is_file():
            raise GenotypeError(f"{spec} is a directory without a genotype.json")
    return Genotype.load(path)


def build_model(cfg: TrainConfig, genotype: Genotype, num_classes: int) -> AutoDeepLab:
    """The AutoDeepLab network ``cfg.model`` (S / M / L / tiny) for ``genotype``, with the
    config's drop-path, ASPP dropout, BatchNorm settings and input normalisation (the data
    stay ImageNet-normalised; the network's first op maps them to ``cfg.input_norm``, so
    evaluate, predict and export need nothing else)."""
    scale, shift = input_affine(cfg.input_norm) or (None, None)
    return AutoDeepLab.from_preset(
        cfg.model,
        genotype,
        num_classes=num_classes,
        drop_path_prob=cfg.drop_path_prob,
        aspp_dropout=cfg.aspp_dropout,
        bn_momentum=cfg.bn_momentum,
        backbone_bn_eps=cfg.backbone_bn_eps,
        input_scale=scale,
        input_shift=shift,
    )


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
    """Rebuild the trained network from a run directory (its latest checkpoint) or a file.

    Raises CheckpointError / GenotypeError / ConfigError naming the file when it is not a
    training checkpoint or its weights do not fit its genotype.
    """
    path = Path(path)
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
