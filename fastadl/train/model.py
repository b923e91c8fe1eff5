"""The network a retraining builds: from a genotype spec (``--genotype``) and a TrainConfig."""

from __future__ import annotations

import os
from pathlib import Path

from fastadl.data.transforms import input_affine
from fastadl.nn.derived.autodeeplab import AutoDeepLab
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype, GenotypeError
from fastadl.train.config import TrainConfig


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
