"""The derived network as a backbone: its multi-scale features, timm ``features_only``-style.

``autodeeplab_backbone(genotype, "S")`` (or a width F) builds the stem and cells of the final
network (no ASPP, decoder or classifier); ``AutoDeepLabFeatures.from_network(net)`` wraps a
built or trained ``AutoDeepLab``, sharing its modules and weights. Either way, forward returns
one feature map per reduction 2, 4, 8, ... up to the deepest level the path visits:

    x (N, C_in, H, W) → [(N, c_2, ⌈H/2⌉, ⌈W/2⌉), (N, c_4, ~H/4, ~W/4), ..., (N, c_r, ~H/r, ~W/r)]

where /2 is the stem's first tap, /4 the last cell at level 0 (the stem's output when the path
leaves level 0 at once), and /4·2^k the **last** cell at level k along the path (the most
refined feature of that scale). Sizes round up level by level, so any input size works (an
odd one included). ``feature_info`` describes each output as timm's does: ``channels()``,
``reduction()``, ``module_name()`` and dicts with ``num_chs``, ``reduction``, ``module``.
Features are the network's own tensors, pre-activation (as TF's taps: every consumer in
Auto-DeepLab starts with a ReLU).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from fastadl.nn.derived.autodeeplab import PRESETS, AutoDeepLab, trunk
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype


class FeatureInfo:
    """Channels, reduction and source module of each output, timm ``FeatureInfo``-style."""

    def __init__(self, info: Sequence[dict]) -> None:
        self.info = [dict(d) for d in info]

    def channels(self, idx: int | None = None) -> list[int] | int:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | None = None) -> list[int] | int:
        return self.get("reduction", idx)

    def module_name(self, idx: int | None = None) -> list[str] | str:
        return self.get("module", idx)

    def get(self, key: str, idx: int | None = None):
        return [d[key] for d in self.info] if idx is None else self.info[idx][key]

    def __getitem__(self, idx: int) -> dict:
        return self.info[idx]

    def __len__(self) -> int:
        return len(self.info)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info})"


def feature_positions(network: AutoDeepLab) -> list[tuple[int, int, int, str]]:
    """(trunk position, channels, reduction, module name) per reduction 2, 4, ..., deepest.

    Trunk positions are AutoDeepLab.trunk's: 0 / 1 the stem's taps, 2 + i cell i.
    """
    stem = network.stem
    found = {
        2: (0, stem.conv1[0].out_channels, "stem.conv1"),
        4: (1, stem.conv2[1].out_channels, "stem.conv2"),
    }
    for i, (cell, level) in enumerate(zip(network.cells, network.path, strict=True)):
        found[4 * 2**level] = (2 + i, cell.out_channels, f"cells.{i}")  # later cells win
    return [(pos, ch, red, name) for red, (pos, ch, name) in sorted(found.items())]


class AutoDeepLabFeatures(nn.Module):
    """The stem and cells of an AutoDeepLab network, returning multi-scale features.

    out_indices: which of the features (0 = /2, 1 = /4, ...) to return, in order (default:
    all). The input affine of a trained network (``input_norm``) is kept.
    """

    def __init__(self, network: AutoDeepLab, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        every = feature_positions(network)
        if out_indices is None:
            out_indices = range(len(every))
        out_indices = tuple(int(i) for i in out_indices)
        bad = [i for i in out_indices if not -len(every) <= i < len(every)]
        if bad or not out_indices:
            raise ValueError(
                f"out_indices {list(out_indices)}: this network has {len(every)} feature levels "
                f"(reductions {[r for _, _, r, _ in every]}); pick indices 0..{len(every) - 1}"
            )
        chosen = [every[i] for i in out_indices]
        self.out_indices = out_indices
        self.feature_info = FeatureInfo(
            {"num_chs": ch, "reduction": red, "module": name} for _, ch, red, name in chosen
        )
        self._positions = tuple(pos for pos, _, _, _ in chosen)
        self.genotype = network.genotype
        self.path = network.path
        self.stem = network.stem
        self.cells = network.cells
        self.upsample_before = list(network.upsample_before)
        self.register_buffer("input_scale", network.input_scale, False)
        self.register_buffer("input_shift", network.input_shift, False)

    @classmethod
    def from_network(
        cls, network: AutoDeepLab, out_indices: Sequence[int] | None = None
    ) -> AutoDeepLabFeatures:
        """Features of a built or trained network (modules and weights shared, not copied)."""
        return cls(network, out_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return trunk(self, x, self._positions)  # the network's own walk over stem and cells


def build_network(genotype: Genotype | dict, model: str | int, **kwargs) -> AutoDeepLab:
    """A fresh AutoDeepLab (one class) for ``genotype`` at a preset or an int width F."""
    if isinstance(model, str):
        return AutoDeepLab.from_preset(model, genotype, 1, **kwargs)
    if isinstance(model, int) and not isinstance(model, bool):
        return AutoDeepLab(genotype, 1, model, **kwargs)
    raise ValueError(f"model must be one of {sorted(PRESETS)} or an int width F, got {model!r}")


def autodeeplab_backbone(
    genotype: Genotype | dict = PAPER_GENOTYPE,
    model: str | int = "S",
    *,
    out_indices: Sequence[int] | None = None,
    **kwargs,
) -> AutoDeepLabFeatures:
    """A fresh (randomly initialised) backbone for ``genotype``.

    model: a preset "S" / "M" / "L" (F = 20 / 32 / 48) or "tiny", or an int width F (with the
    paper's 64-64-128 stem). kwargs go to AutoDeepLab (in_channels, stem_channels, bn_momentum,
    backbone_bn_eps, drop_path_prob, ...).
    """
    return AutoDeepLabFeatures(build_network(genotype, model, **kwargs), out_indices)
