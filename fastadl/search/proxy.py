"""A genotype's proxy score: its validation mIoU inside a finished search's supernet, with the
weights the supernet learned (inherited) and nothing retrained.

The supernet is made to compute the genotype's network as the supernet wires it: α one-hot on
each kept edge's op and on ``none`` for every other edge (a block then sums its two kept
branches only), β one-hot per source node such that every node of the path takes its H^{l-1}
from the path only, and only the head at the path's last level is kept. One difference from
the derived network remains, the supernet's own wiring: a node's H^{l-2} is the node two
layers back *at its level* (docs/METHOD.md §2), which is off the path where the path changed
level, while the derived network takes the path's node there.
BatchNorm uses batch statistics (the supernet's running averages belong to the mixture, not
to this network), as the search's ``--val-bn batch`` validation does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from fastadl.nn import SuperNet
from fastadl.runtime.config import config_from_dict
from fastadl.runtime.loading import build_datasets
from fastadl.runtime.precision import Precision
from fastadl.runtime.rundir.checkpoint import load_checkpoint, load_module_state
from fastadl.runtime.rundir.files import read_config_dict
from fastadl.runtime.validation import validation_scores
from fastadl.search.config import SearchConfig
from fastadl.search.perturbation import OFF
from fastadl.space.cell_topology import edge_offset
from fastadl.space.genotype import Genotype
from fastadl.space.trellis import (
    DIRECTIONS,
    direction_between,
    levels_at,
    target_level,
    transition_mask,
)


def genotype_network(model: SuperNet, genotype: Genotype) -> SuperNet:
    """A copy of ``model`` whose α, β and heads compute exactly ``genotype`` (module docstring)."""
    if (genotype.block_multiplier, genotype.layers) != (model.block_multiplier, model.layers):
        raise ValueError(
            f"genotype has B = {genotype.block_multiplier}, L = {genotype.layers}; the supernet "
            f"B = {model.block_multiplier}, L = {model.layers}"
        )
    net = copy.deepcopy(model)
    ops = list(net.primitives)
    alphas = torch.full_like(net.alphas, OFF)
    alphas[:, ops.index("none")] = 0.0
    for b, pair in enumerate(genotype.blocks()):
        for op, source in pair:
            row = edge_offset(b) + source
            alphas[row] = OFF
            alphas[row, ops.index(op)] = 0.0
    # β is normalised per *source* node, so every source's weight must be sent somewhere:
    # the path's node along the path, every other node to a target off the path (each has at
    # least two targets, at most one on the path), so nothing off the path reaches it.
    betas = torch.zeros_like(net.betas)
    allowed = transition_mask(genotype.layers)
    sources = (0, *genotype.path[:-1])
    for layer, (source, target) in enumerate(zip(sources, genotype.path, strict=True)):
        betas[layer, source, direction_between(source, target)] = -OFF
        for level in levels_at(layer):
            if level != source:
                away = next(d for d in DIRECTIONS if allowed[layer, level, d]
                            and target_level(level, d) != target)  # fmt: skip
                betas[layer, level, away] = -OFF
    with torch.no_grad():
        net.alphas.copy_(alphas)
        net.betas.copy_(betas)
    last = str(genotype.path[-1])
    net.heads = nn.ModuleDict({last: net.heads[last]})
    return net


class SearchProxy:
    """Scores genotypes in the supernet of the finished search in ``run_dir`` (its config,
    latest checkpoint and validation set)."""

    def __init__(self, run_dir: str | Path, device: str = "cpu") -> None:
        run_dir = Path(run_dir)
        self.cfg = config_from_dict(SearchConfig, read_config_dict(run_dir), str(run_dir))
        self.device = torch.device(device)
        _, self.val_set = build_datasets(self.cfg)
        self.model = SuperNet(
            self.val_set.num_classes,
            layers=self.cfg.layers,
            filter_multiplier=self.cfg.filter_multiplier,
            block_multiplier=self.cfg.block_multiplier,
            backend=self.cfg.backend,
        ).to(self.device)
        state = load_checkpoint(run_dir, map_location=self.device)
        load_module_state(self.model, state["model"], f"{run_dir} supernet")

    def score(self, genotype: Genotype) -> float:
        """The genotype's validation mIoU with the supernet's weights."""
        net = genotype_network(self.model, genotype)
        miou, _ = validation_scores(
            net, self.val_set, self.cfg, self.device, Precision("off", self.device.type), True
        )
        return float(miou)
