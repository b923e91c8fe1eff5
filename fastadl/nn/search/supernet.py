"""The Auto-DeepLab supernet: stem, L-layer trellis of search cells, four ASPP heads.

Node update (paper Eq. 6, docs/METHOD.md §2):
    H^l_s = Σ_{s'} β̂^l_{s'→s} · Cell_{l,s}(pre_{s'→s}(H^{l-1}_{s'}), pre(H^{l-2}_s); α)
one cell module per node, evaluated once per incoming path with the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastadl.nn.search.aspp import SearchASPP
from fastadl.nn.search.cell import SearchCell
from fastadl.nn.search.transitions import Reduce, SearchReLUConvBN, UpsampleReLUConvBN
from fastadl.space.cell_topology import num_edges
from fastadl.space.genotype import Genotype, decode_cell, viterbi
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import (
    COARSER,
    FINER,
    SAME,
    at_least_float32,
    incoming,
    levels_at,
    normalize_betas,
)

STEM0_LEVEL = -1  # stem0's output, at downsample 2, is H^{l-2} of layer 1

# ModuleDict key of the H^{l-1} transition, by the direction of the move into this node.
_FROM = {COARSER: "from_finer", SAME: "from_same", FINER: "from_coarser"}


def level_sizes(height: int, width: int, max_level: int = 3) -> dict[int, tuple[int, int]]:
    """Spatial size of each level (-1 = /2, 0 = /4, ...): the input halved, rounding up."""
    sizes, h, w = {}, height, width
    for level in range(STEM0_LEVEL, max_level + 1):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes[level] = (h, w)
    return sizes


class TrellisNode(nn.Module):
    """One trellis node (layer, level): its H^{l-1} transitions, H^{l-2} reduction and cell."""

    def __init__(
        self,
        layer: int,
        level: int,
        filter_multiplier: int,
        block_multiplier: int,
        primitives: Sequence[str],
        backend: str,
        recompute: bool = False,
    ):
        super().__init__()
        F_, B = filter_multiplier, block_multiplier
        C = F_ * 2**level
        self.layer, self.level = layer, level
        self.paths = incoming(layer, level)

        def node_channels(lvl: int) -> int:
            return max(1, B * F_ // 2) if lvl == STEM0_LEVEL else B * F_ * 2**lvl

        pre = {}
        for src, d in self.paths:
            if d == SAME:
                pre[_FROM[d]] = SearchReLUConvBN(node_channels(src), C, 1)
            elif d == COARSER:  # the source is finer: "a stride-2 convolution" (paper §5.1)
                pre[_FROM[d]] = SearchReLUConvBN(node_channels(src), C, 3, stride=2)
            else:
                pre[_FROM[d]] = UpsampleReLUConvBN(node_channels(src), C)
        self.pre_prev = nn.ModuleDict(pre)
        # H^{l-2}: the node at this level two layers back, or the nearest finer one reduced
        # by stride 2 or 4 (the first author's rule, docs/METHOD.md §2).
        pp_levels = [STEM0_LEVEL] if layer == 1 else list(levels_at(layer - 2))
        self.pp_level = max(lvl for lvl in pp_levels if lvl <= level)
        self.pre_prev_prev = Reduce(node_channels(self.pp_level), C, level - self.pp_level)
        self.cell = SearchCell(
            C, block_multiplier, primitives, backend=backend, recompute=recompute
        )

    def forward(
        self,
        prev: dict[int, torch.Tensor],
        prev_prev: dict[int, torch.Tensor],
        weights: torch.Tensor,
        betas: torch.Tensor,
        size: tuple[int, int],
    ) -> torch.Tensor:
        """prev/prev_prev: level → node output of layers l-1 / l-2; weights: (E, K) softmaxed α;
        betas: (4, 3) normalised β of this layer's incoming edges → (N, B·C, *size)."""
        s0, s1s, path_betas = self.inputs(prev, prev_prev, betas, size)
        return self.cell.forward_paths(s0, s1s, weights, path_betas)

    def inputs(
        self,
        prev: dict[int, torch.Tensor],
        prev_prev: dict[int, torch.Tensor],
        betas: torch.Tensor,
        size: tuple[int, int],
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """The cell's inputs: H^{l-2} reduced (N, C, H, W), each path's H^{l-1} transition
        (P of them, (N, C, H, W)) and the paths' β (P,). The region around the cell:
        under --compile its SearchReLUConvBN transitions run compiled (fastadl/nn/search/compile.py)."""
        s0 = self.pre_prev_prev(prev_prev[self.pp_level])
        s1s = []
        for src, d in self.paths:
            pre = self.pre_prev[_FROM[d]]
            s1s.append(pre(prev[src], size) if d == FINER else pre(prev[src]))
        path_betas = torch.stack([betas[src, d] for src, d in self.paths])
        return s0, s1s, path_betas


class SuperNet(nn.Module):
    """Auto-DeepLab search network. x: (N, 3, H, W) → logits (N, num_classes, H, W).

    α: (E, K) shared by all cells; β: (L, 4, 3) = [layer, source level, {finer, same, coarser}];
    both registered parameters initialised 1e-3·N(0, 1).
    """

    def __init__(
        self,
        num_classes: int,
        layers: int = 12,
        filter_multiplier: int = 8,
        block_multiplier: int = 5,
        primitives: Sequence[str] = PRIMITIVES,
        backend: str = "auto",
        in_channels: int = 3,
        recompute: bool = False,
    ):
        super().__init__()
        if layers < 1 or filter_multiplier < 1 or block_multiplier < 1 or num_classes < 1:
            raise ValueError(
                "num_classes, layers, filter_multiplier and block_multiplier must be >= 1"
            )
        self.num_classes = num_classes
        self.layers = layers
        self.filter_multiplier = filter_multiplier
        self.block_multiplier = block_multiplier
        self.primitives = tuple(primitives)
        F_, B = filter_multiplier, block_multiplier

        # Stem (search): BN with affine (**decision**: only the cell's ops and transitions are
        # affine-free, as in DARTS).
        half = max(1, B * F_ // 2)
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=False),
        )
        self.stem1 = nn.Sequential(
            nn.Conv2d(half, B * F_, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(B * F_),
            nn.ReLU(inplace=False),
        )
        self.nodes = nn.ModuleDict()
        for layer in range(1, layers + 1):
            for level in levels_at(layer):
                self.nodes[self.node_key(layer, level)] = TrellisNode(
                    layer, level, F_, B, self.primitives, backend, recompute
                )
        self.heads = nn.ModuleDict()
        for level in levels_at(layers):
            C = B * F_ * 2**level
            downsample = 4 * 2**level
            self.heads[str(level)] = SearchASPP(C, C, 96 // downsample, num_classes)

        self.alphas = nn.Parameter(1e-3 * torch.randn(num_edges(B), len(self.primitives)))
        self.betas = nn.Parameter(1e-3 * torch.randn(layers, 4, 3))

    @staticmethod
    def node_key(layer: int, level: int) -> str:
        return f"layer{layer}_level{level}"

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas, self.betas]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def normalized_betas(self) -> torch.Tensor:
        """(L, 4, 3): outgoing softmax per source node, disallowed entries 0 (paper Eq. 7)."""
        return normalize_betas(self.betas)

    def genotype(self) -> Genotype:
        return Genotype(
            cell=decode_cell(self.alphas, self.primitives),
            path=viterbi(self.normalized_betas()),
            filter_multiplier=self.filter_multiplier,
            block_multiplier=self.block_multiplier,
            layers=self.layers,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in_channels, H, W) → (N, num_classes, H, W), any H, W (odd ones included)."""
        H, W = x.shape[-2:]
        sizes = level_sizes(H, W)
        # α and β stay float32 under autocast (their softmax feeds every edge).
        weights = self.alphas.to(at_least_float32(self.alphas)).softmax(dim=-1)
        betas = self.normalized_betas()
        s0 = self.stem0(x)
        prev_prev = {STEM0_LEVEL: s0}
        prev = {0: self.stem1(s0)}
        for layer in range(1, self.layers + 1):
            cur = {
                level: self.nodes[self.node_key(layer, level)](
                    prev, prev_prev, weights, betas[layer - 1], sizes[level]
                )
                for level in levels_at(layer)
            }
            prev_prev, prev = prev, cur
        logits = None
        for level, head in self.heads.items():
            y = F.interpolate(
                head(prev[int(level)]), size=(H, W), mode="bilinear", align_corners=False
            )
            logits = y if logits is None else logits + y
        return logits
