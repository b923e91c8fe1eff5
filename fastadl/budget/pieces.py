"""Every piece of a derived AutoDeepLab (table.py's fixed / link / op / head) as a runnable
module with the shapes of its inputs, built from the network's own classes and functions
(DerivedCell, make_op, make_head, run_head, the trunk's level sizes) so that the pieces cannot
drift from the network.

A model configuration is a dict: AutoDeepLab's keyword arguments (num_classes,
filter_multiplier, stem_channels, head_channels, low_level_channels, aspp_base_rates,
in_channels, input_scale, input_shift, ...) plus ``blocks`` (B) and ``layers`` (L), which the
network takes from the genotype. ``preset_config`` builds one from a preset name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fastadl.budget.table import STEM_HALF, STEM_QUARTER, Position, going_down
from fastadl.nn.derived.autodeeplab import (
    LOW_LEVEL_CELL,
    MIN_LAYERS,
    PRESETS,
    AutoDeepLab,
    apply_input_affine,
    level_sizes,
    make_head,
    run_head,
)
from fastadl.nn.derived.cell import DerivedCell, join_block, join_cell, resize
from fastadl.space.genotype import Genotype
from fastadl.space.primitives import DERIVED_PRIMITIVES
from fastadl.space.trellis import incoming, levels_at

DEFAULT_BLOCKS, DEFAULT_LAYERS = 5, 12  # the search's B and L (paper §4)
# AutoDeepLab's defaults for the sizes the pieces need (its constructor's signature)
DEFAULTS = {
    "num_classes": 19,
    "filter_multiplier": 20,
    "stem_channels": (64, 64, 128),
    "head_channels": 256,
    "low_level_channels": 48,
    "aspp_base_rates": (6, 12, 18),
    "in_channels": 3,
}
# constructor arguments that change neither the cost nor the shapes (training only)
TRAINING_ONLY = ("drop_path_prob", "aspp_dropout", "bn_momentum", "backbone_bn_eps")


@dataclass
class Piece:
    """A module and the (batch 1) shapes of the tensors its forward takes, in order."""

    module: nn.Module
    inputs: tuple[tuple[int, ...], ...]


def preset_config(
    name: str, blocks: int = DEFAULT_BLOCKS, layers: int = DEFAULT_LAYERS, num_classes: int = 19
) -> dict:
    """The model configuration of AutoDeepLab.from_preset(name) with B blocks and L layers."""
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(PRESETS)}")
    F, overrides = PRESETS[name]
    return {
        "num_classes": num_classes,
        "filter_multiplier": F,
        **overrides,
        "blocks": blocks,
        "layers": layers,
    }


def full_config(model_kwargs: Mapping[str, object]) -> dict:
    """``model_kwargs`` with AutoDeepLab's defaults filled in (stem channels as a tuple)."""
    unknown = set(model_kwargs) - set(DEFAULTS) - {"blocks", "layers", "input_scale"}
    unknown -= {"input_shift", *TRAINING_ONLY}
    if unknown:
        raise ValueError(f"unknown model configuration keys {sorted(unknown)}")
    cfg = {**DEFAULTS, "blocks": DEFAULT_BLOCKS, "layers": DEFAULT_LAYERS, **model_kwargs}
    cfg["stem_channels"] = tuple(int(c) for c in cfg["stem_channels"])
    cfg["aspp_base_rates"] = tuple(int(r) for r in cfg["aspp_base_rates"])
    if cfg["layers"] < MIN_LAYERS or cfg["blocks"] < 1:
        raise ValueError(f"need blocks >= 1 and layers >= {MIN_LAYERS}, got {cfg}")
    return cfg


def build_network(model_kwargs: Mapping[str, object], genotype) -> AutoDeepLab:
    """The AutoDeepLab of ``genotype`` with the configuration's sizes."""
    cfg = full_config(model_kwargs)
    kwargs = {k: v for k, v in cfg.items() if k not in ("blocks", "layers")}
    return AutoDeepLab(genotype, **kwargs)


class Geometry:
    """Channels and spatial sizes of every trellis position for a configuration and input."""

    def __init__(self, cfg: Mapping[str, object], size: Sequence[int]) -> None:
        self.cfg = cfg
        self.size = (int(size[0]), int(size[1]))
        half = tuple(math.ceil(s / 2) for s in self.size)  # the stem's stride-2 convs
        self.half = half
        self.levels = level_sizes(tuple(math.ceil(s / 2) for s in half))

    def C(self, level: int) -> int:
        """Channels per block of a cell at ``level``."""
        return self.cfg["filter_multiplier"] * 2**level

    def channels(self, p: Position) -> int:
        stem = self.cfg["stem_channels"]
        if p == STEM_HALF:
            return stem[1]
        if p == STEM_QUARTER:
            return stem[2]
        return self.cfg["blocks"] * self.C(p)

    def hw(self, p: Position) -> tuple[int, int]:
        if p == STEM_HALF:
            return self.half
        return self.levels[0 if p == STEM_QUARTER else p]

    def shape(self, p: Position) -> tuple[int, int, int, int]:
        return (1, self.channels(p), *self.hw(p))


def link_keys(layers: int) -> list[tuple[Position, Position, int]]:
    """Every (a, b, c) a path of ``layers`` cells can hold (cell_positions' triples)."""

    def before(layer: int, level: Position) -> list[Position]:
        """Positions at layer - 1 that lead to (layer, level); layer 0 is the stem's /4."""
        if layer == 0:
            return [STEM_HALF]
        if layer == 1:
            return [STEM_QUARTER]
        return [s for s, _ in incoming(layer, level)]

    return sorted(
        {
            (a, b, c)
            for layer in range(1, layers + 1)
            for c in levels_at(layer)
            for b in before(layer, c)
            for a in before(layer - 1, b)
        },
        key=str,
    )


def op_keys() -> list[tuple[int, int, str]]:
    """(level, stride, primitive) of every branch a cell can hold."""
    return [
        (level, stride, op)
        for level in range(4)
        for stride in ((1, 2) if level else (1,))
        for op in DERIVED_PRIMITIVES
    ]


def head_keys(layers: int) -> list[tuple[int, int]]:
    """(low, last) pairs a path of ``layers`` cells can end with."""
    low_layer = LOW_LEVEL_CELL + 1
    return [
        (low, last)
        for low in levels_at(low_layer)
        for last in levels_at(layers)
        if abs(last - low) <= layers - low_layer
    ]


class Fixed(nn.Module):
    """The input affine and the stem of ``net``: x (1, in, H, W) → (H^{-1}, H^0)."""

    def __init__(self, net: AutoDeepLab) -> None:
        super().__init__()
        self.stem = net.stem
        self.register_buffer("input_scale", net.input_scale, False)
        self.register_buffer("input_shift", net.input_shift, False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stem(apply_input_affine(self, x))


class Link(nn.Module):
    """A cell besides its ops: the trunk's upsampling of H^{l-1} (path going up), the cell's
    preprocessing, the block sums and the concatenation. forward(s0, s1, *branches) with the
    2·B branch outputs (C channels at the cell's size)."""

    def __init__(self, cell: DerivedCell, up_to: tuple[int, int] | None) -> None:
        super().__init__()
        self.cell = cell
        self.up_to = up_to

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, *branches: torch.Tensor) -> torch.Tensor:
        if self.up_to is not None:
            s1 = resize(s1, self.up_to)
        self.cell.preprocess(s0, s1)
        pairs = range(0, len(branches), 2)
        return join_cell([join_block(branches[k : k + 2]) for k in pairs])


class Head(nn.Module):
    """ReLU → ASPP on the last cell, the decoder with the low-level cell, the final resize."""

    def __init__(self, aspp: nn.Module, decoder: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.aspp, self.decoder, self.size = aspp, decoder, size

    def forward(self, low: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return run_head(self.aspp, self.decoder, low, last, self.size)


def _cell_for(geo: Geometry, a: Position, b: Position, c: int) -> DerivedCell:
    blocks = geo.cfg["blocks"]
    # a Link runs no op; pools hold no parameters and no multiply-adds to subtract
    cell = (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * blocks
    stride = 2 if going_down(b, c) else 1
    return DerivedCell(cell, geo.channels(a), geo.channels(b), geo.C(c), stride)


def link_piece(geo: Geometry, a: Position, b: Position, c: int) -> Piece:
    level_b = 0 if b == STEM_QUARTER else b
    up_to = geo.hw(c) if c == level_b - 1 else None
    branch = (1, geo.C(c), *geo.hw(c))
    shapes = (geo.shape(a), geo.shape(b), *[branch] * (2 * geo.cfg["blocks"]))
    return Piece(Link(_cell_for(geo, a, b, c), up_to), shapes)


def op_piece(geo: Geometry, level: int, stride: int, op: str) -> Piece:
    """Branch ``op`` of a cell at ``level``, as the cell builds it (op and drop-path)."""
    cell = DerivedCell(((op, 1), (op, 2)), geo.C(level), geo.C(level), geo.C(level), stride)
    branch = nn.Sequential(cell.ops[0], cell.drop_paths[0])
    return Piece(branch, ((1, geo.C(level), *geo.hw(level - (stride == 2))),))


def head_piece(geo: Geometry, low: int, last: int) -> Piece:
    cfg = geo.cfg
    aspp, decoder = make_head(
        geo.channels(low),
        geo.channels(last),
        last,
        cfg["num_classes"],
        cfg["head_channels"],
        cfg["low_level_channels"],
        cfg["aspp_base_rates"],
    )
    return Piece(Head(aspp, decoder, geo.size), (geo.shape(low), geo.shape(last)))


def iter_pieces(
    model_kwargs: Mapping[str, object], size: Sequence[int]
) -> Iterator[tuple[str, object, Piece]]:
    """(kind, key, Piece) for every piece: ("fixed", None, …), ("link", (a, b, c), …),
    ("op", (level, stride, primitive), …), ("head", (low, last), …). One at a time, so that
    only one piece's weights are alive."""
    cfg = full_config(model_kwargs)
    geo = Geometry(cfg, size)
    shortest = Genotype(
        cell=(("max_pool_3x3", 0), ("max_pool_3x3", 1)) * cfg["blocks"],
        path=(0,) * MIN_LAYERS,
        block_multiplier=cfg["blocks"],
        layers=MIN_LAYERS,
    )
    fixed = Fixed(build_network(cfg, shortest))
    yield "fixed", None, Piece(fixed, ((1, cfg["in_channels"], *geo.size),))
    for key in link_keys(cfg["layers"]):
        yield "link", key, link_piece(geo, *key)
    for key in op_keys():
        yield "op", key, op_piece(geo, *key)
    for key in head_keys(cfg["layers"]):
        yield "head", key, head_piece(geo, *key)
