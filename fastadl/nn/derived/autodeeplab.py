"""The final (retrainable) Auto-DeepLab network built from a Genotype: docs/METHOD.md §5.

Structure (the authors' TF model, tensorflow/models research/deeplab/core/nas_network.py):

    stem:  conv3×3/2 (64) → BN → ReLU → conv3×3 (64) → BN ──────────────► H^{-1} (/2, 64)
                                        → ReLU → conv3×3/2 (128) → BN ──► H^0   (/4, 128)
    cells: cell l at path[l-1] with C = F·2^level, inputs (H^{l-2}, H^{l-1}) → 5C channels
    ReLU → ASPP (256) ─┐
    cell 3's output (low-level) ─→ DeepLabv3+ decoder → 1×1 classifier → upsample to the input

Interpretation choices (each one is needed for, or neutral to, the paper's parameter counts
10.15 M / 21.62 M / 44.42 M for S / M / L with 19 classes, which this code reproduces: 10.147 M,
21.622 M, 44.425 M; see tests/nn/test_autodeeplab.py):
- The stem's taps are taken after BN and before the ReLU, as in TF's ``_nas_stem``; every
  consumer starts with a ReLU (the cells' ReLU-1×1-BN preprocessing and the sep / dil convs).
- Every BN is affine (2 parameters per channel); every conv is bias-free except the classifier.
- dil_conv_kxk is a dense k×k conv with dilation 2 (ops.py); sep_conv has its two
  depthwise+pointwise repetitions; ASPP and decoder convs are plain (not separable) 3×3 convs.
- The cell output is the concatenation of its B blocks (B·C channels) whether or not another
  block uses them (TF's ``used_hiddenstates`` marks only the two cell inputs as used).
- Level sizes: level 0 is the stem's /4 size, each level below halves it rounding up (what a
  stride-2 'same' conv does); going up, H^{l-1} is bilinearly resized to the exact size of its
  new level, so any input size (odd ones included) works.
- Low-level features: the output of the **third** cell (TF's end point ``Cell_2``), whatever its
  level (/4 on the paper's path). (**decision**) A path must therefore have at least 3 layers;
  if the third cell is not at /4 the decoder simply works at that cell's resolution.
- ASPP rates: (6, 12, 18) at /16, scaled by 16 / the last cell's downsample (decoder.py).
- ``genotype.filter_multiplier`` is the *search's* F; the final network's F is the
  ``filter_multiplier`` argument (20 / 32 / 48 for S / M / L).
- Conv weights keep PyTorch's default init, which equals TF's ``variance_scaling(1/3, FAN_IN,
  uniform)`` used by the authors; the classifier's bias starts at zero.
- Training details are constructor arguments whose defaults are PyTorch's; the TF values (the
  retraining presets in train/config.py use them) are: ``aspp_dropout=0.1`` (keep_prob
  0.9 after the ASPP projection), ``bn_momentum=3e-4`` (moving-average decay 0.9997 in every
  BN), ``backbone_bn_eps=1e-3`` (stem and cells; ASPP and decoder keep 1e-5 in TF too), and an
  input affine that turns ImageNet-normalised images into TF's [-1, 1] range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fastadl.nn.batchnorm import configure_batchnorm
from fastadl.nn.derived.cell import DerivedCell, resize
from fastadl.nn.derived.decoder import ASPP, BASE_ATROUS_RATES, Decoder, atrous_rates_for
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype, GenotypeError, validate

LOW_LEVEL_CELL = 2  # the third cell's output feeds the decoder (TF: end point 'Cell_2')
MIN_LAYERS = LOW_LEVEL_CELL + 1

# name → (F, constructor overrides). S / M / L are the paper's Table 2 models. "tiny"
# (**decision**) is for CPU training and tests: F = 8 (the search's F), a narrow stem
# (16, 16, 32) and narrow heads (ASPP / decoder 64 filters, 16 low-level filters).
# "probe" (**decision**, docs/SEARCH_QUALITY.md) is the network the search-quality study
# retrains: the cells hold most of the weights and do most of the work. In "tiny" the heads
# hold ~95 % of the parameters and ASPP's rates (24, 48, 72 at /4) exceed a 64² crop's 16² map,
# so its 3×3 atrous convs see only their centre tap and the cell is a thin link between a
# strong stem and strong heads. Here the stem is halved (8, 8, 16), ASPP and decoder have 16
# filters (8 low-level), the cells get F = 12, and ASPP's rates are (1, 2, 3) at /16 (4, 8,
# 12 at /4), all inside the map.
PRESETS: dict[str, tuple[int, dict]] = {
    "S": (20, {}),
    "M": (32, {}),
    "L": (48, {}),
    "tiny": (8, {"stem_channels": (16, 16, 32), "head_channels": 64, "low_level_channels": 16}),
    "probe": (
        12,
        {
            "stem_channels": (8, 8, 16),
            "head_channels": 16,
            "low_level_channels": 8,
            "aspp_base_rates": (1, 2, 3),
        },
    ),  # fmt: skip
}

# The paper's Table 2 (19 classes): parameters (M) and multiply-adds at 1024×2048 (B).
PAPER_SIZES: dict[str, tuple[float, float]] = {
    "S": (10.15, 333.25),
    "M": (21.62, 460.93),
    "L": (44.42, 695.03),
}


def _as_genotype(genotype) -> Genotype:
    if isinstance(genotype, dict):
        genotype = Genotype.from_dict(genotype)
    if not isinstance(genotype, Genotype):
        raise GenotypeError(
            f"AutoDeepLab needs a fastadl.Genotype (or its dict form), got {type(genotype).__name__}"
        )
    validate(genotype)  # again: a frozen dataclass can still be tampered with
    if len(genotype.path) < MIN_LAYERS:
        raise GenotypeError(
            f"path has {len(genotype.path)} layer(s) but AutoDeepLab needs at least {MIN_LAYERS}: "
            f"the decoder's low-level features are the output of cell {LOW_LEVEL_CELL + 1} "
            "(the third cell)"
        )
    return genotype


class Stem(nn.Module):
    """Three 3×3 convs (c0, c1, c2 filters; stride 2, 1, 2), each followed by BN; ReLU between.

    Returns (the /2 tap after conv1's BN, the /4 output after conv2's BN), both pre-ReLU (TF).
    """

    def __init__(self, channels: Sequence[int] = (64, 64, 128), in_channels: int = 3) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.conv0 = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c0),
            nn.ReLU(inplace=False),
        )
        self.conv1 = nn.Sequential(nn.Conv2d(c0, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1))
        self.conv2 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c2),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h2 = self.conv1(self.conv0(x))
        return h2, self.conv2(h2)


class AutoDeepLab(nn.Module):
    """The derived Auto-DeepLab network for ``genotype`` (cell + path).

    x: (N, 3, H, W), any H, W → logits (N, num_classes, H, W).

    drop_path_prob: the final scheduled drop-path probability (0 = off). Cell i (0-based, of n)
    drops each non-skip branch with p = drop_path_prob · (i+1)/n · progress during training,
    where progress ∈ [0, 1] is set by ``set_drop_path_progress`` (e.g. iteration / total; it
    starts at 1.0, so an unscheduled run uses the full probability). Off in eval mode.
    """

    def __init__(
        self,
        genotype: Genotype = PAPER_GENOTYPE,
        num_classes: int = 19,
        filter_multiplier: int = 20,
        drop_path_prob: float = 0.0,
        *,
        stem_channels: Sequence[int] = (64, 64, 128),
        head_channels: int = 256,
        low_level_channels: int = 48,
        aspp_base_rates: Sequence[int] = BASE_ATROUS_RATES,
        in_channels: int = 3,
        aspp_dropout: float = 0.0,
        bn_momentum: float = 0.1,
        backbone_bn_eps: float = 1e-5,
        input_scale: Sequence[float] | None = None,
        input_shift: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        genotype = _as_genotype(genotype)
        if filter_multiplier < 1 or num_classes < 1:
            raise ValueError("filter_multiplier and num_classes must be >= 1")
        if len(stem_channels) != 3:
            raise ValueError("stem_channels must hold 3 filter counts")
        self.genotype = genotype
        self.num_classes = num_classes
        self.filter_multiplier = filter_multiplier
        self.path = tuple(genotype.path)

        self.stem = Stem(stem_channels, in_channels)
        channels = [stem_channels[1], stem_channels[2]]  # H^{-1}, H^0
        self.cells = nn.ModuleList()
        self.upsample_before: list[bool] = []  # cell i's H^{l-1} is upsampled (path goes up)
        prev_level = 0  # the stem's output is at /4
        for level in self.path:
            C = filter_multiplier * 2**level
            stride = 2 if level == prev_level + 1 else 1
            cell = DerivedCell(genotype.cell, channels[-2], channels[-1], C, stride)
            self.cells.append(cell)
            self.upsample_before.append(level == prev_level - 1)
            channels.append(cell.out_channels)
            prev_level = level

        self.low_level_cell = LOW_LEVEL_CELL
        self.aspp, self.decoder = make_head(
            channels[2 + LOW_LEVEL_CELL],
            channels[-1],
            self.path[-1],
            num_classes,
            head_channels,
            low_level_channels,
            aspp_base_rates,
            aspp_dropout,
        )
        for part in (self.stem, self.cells):
            configure_batchnorm(part, momentum=bn_momentum, eps=backbone_bn_eps)
        for part in (self.aspp, self.decoder):
            configure_batchnorm(part, momentum=bn_momentum)
        self._set_input_affine(input_scale, input_shift, in_channels)

        self._drop_path_prob = 0.0
        self._drop_path_progress = 1.0
        self.drop_path_prob = drop_path_prob

    # -- construction helpers -------------------------------------------------------------
    @classmethod
    def from_preset(
        cls, name: str, genotype: Genotype = PAPER_GENOTYPE, num_classes: int = 19, **kwargs
    ) -> AutoDeepLab:
        """Preset "S", "M", "L" (paper, F = 20 / 32 / 48), "tiny" (CPU) or "probe" (the
        search-quality study; see PRESETS)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        F, overrides = PRESETS[name]
        return cls(genotype, num_classes, F, **{**overrides, **kwargs})

    def _set_input_affine(self, scale, shift, channels: int) -> None:
        """x → x · scale + shift per channel before the stem (None: identity). Buffers outside
        the state_dict: the affine is part of how the network is built, not of its weights."""
        if (scale is None) != (shift is None):
            raise ValueError("input_scale and input_shift go together")
        if scale is not None and not len(scale) == len(shift) == channels:
            raise ValueError(f"input_scale and input_shift need {channels} values each")
        for name, values in (("input_scale", scale), ("input_shift", shift)):
            t = None if values is None else torch.tensor(values, dtype=torch.float32)
            self.register_buffer(name, None if t is None else t.view(1, -1, 1, 1), False)

    # -- drop-path schedule ---------------------------------------------------------------
    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop_path_prob must be in [0, 1), got {p}")
        self._drop_path_prob = float(p)
        self._apply_drop_path()

    def set_drop_path_progress(self, fraction: float) -> None:
        """Training progress in [0, 1] (clamped): the drop-path probability grows linearly with it."""
        self._drop_path_progress = min(1.0, max(0.0, float(fraction)))
        self._apply_drop_path()

    def _apply_drop_path(self) -> None:
        n = len(self.cells)
        for i, cell in enumerate(self.cells):
            cell.set_drop_path(self._drop_path_prob * (i + 1) / n * self._drop_path_progress)

    # -- forward --------------------------------------------------------------------------
    @property
    def output_stride(self) -> int:
        """Downsample of the last cell (the ASPP's input)."""
        return 4 * 2 ** self.path[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, last = trunk(self, x, (2 + self.low_level_cell, 1 + len(self.cells)))
        return run_head(self.aspp, self.decoder, low, last, x.shape[-2:])


def make_head(
    C_low: int,
    C_last: int,
    last_level: int,
    num_classes: int,
    head_channels: int = 256,
    low_level_channels: int = 48,
    aspp_base_rates: Sequence[int] = BASE_ATROUS_RATES,
    aspp_dropout: float = 0.0,
) -> tuple[ASPP, Decoder]:
    """ASPP on the last cell (C_last channels at ``last_level``) and the decoder on the
    low-level cell's C_low channels; the classifier's bias starts at zero."""
    rates = atrous_rates_for(4 * 2**last_level, aspp_base_rates)
    aspp = ASPP(C_last, head_channels, rates, aspp_dropout)
    decoder = Decoder(C_low, head_channels, num_classes, low_level_channels, head_channels)
    nn.init.zeros_(decoder.classifier.bias)
    return aspp, decoder


def run_head(
    aspp: ASPP, decoder: Decoder, low: torch.Tensor, last: torch.Tensor, size: Sequence[int]
) -> torch.Tensor:
    """Logits at ``size`` from the low-level and last cells' outputs (ReLU → ASPP → decoder)."""
    return resize(decoder(aspp(torch.relu(last)), low), size)


def apply_input_affine(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x · input_scale + input_shift when ``net`` has an input affine, else x."""
    if net.input_scale is not None:
        x = x * net.input_scale + net.input_shift
    return x


def level_sizes(level0: Sequence[int]) -> list[tuple[int, int]]:
    """(h, w) of levels 0..3 from level 0's (the stem's /4 output): each level halves the one
    above rounding up, as a stride-2 'same' conv does."""
    sizes = [(int(level0[0]), int(level0[1]))]
    while len(sizes) < 4:
        sizes.append(tuple(math.ceil(s / 2) for s in sizes[-1]))
    return sizes


def trunk(net: nn.Module, x: torch.Tensor, keep: Sequence[int]) -> list[torch.Tensor]:
    """The input affine, stem and cells of ``net``; returns the outputs at positions ``keep``.

    net: an AutoDeepLab, or a module holding its stem, cells, path, upsample_before and input
    affine (backbone.py's AutoDeepLabFeatures). Positions: 0 = the stem's /2 tap H^{-1},
    1 = its /4 output H^0, 2 + i = cell i's output (at level path[i]). Only the kept outputs
    stay alive (inference memory).
    """
    h_prev_prev, h_prev = net.stem(apply_input_affine(net, x))
    kept = {k: v for k, v in ((0, h_prev_prev), (1, h_prev)) if k in keep}
    sizes = level_sizes(h_prev.shape[-2:])
    for i, (cell, level) in enumerate(zip(net.cells, net.path, strict=True)):
        s1 = resize(h_prev, sizes[level]) if net.upsample_before[i] else h_prev
        h_prev_prev, h_prev = h_prev, cell(h_prev_prev, s1)
        if 2 + i in keep:
            kept[2 + i] = h_prev
    return [kept[k] for k in keep]
