"""The derived network as a segmentation_models_pytorch encoder (README: "The found network as
a backbone").

smp builds an encoder from its registry (``segmentation_models_pytorch.encoders.encoders``: a
name → {"encoder": class, "params": constructor kwargs, "pretrained_settings": ...}), calls
``set_in_channels`` and, for an output stride other than 32, ``make_dilated``; its models read
``out_channels`` and ``output_stride`` and call forward, which returns depth + 1 features:
the input itself, then reductions 2, 4, ..., 2^depth. ``register_smp_encoder`` adds an entry for
one genotype (or one trained network); smp is imported only there, so fastadl does not need it.

Odd input sizes: the features round up level by level (backbone.py). smp's Unet resizes each
decoder stage to its skip's size and accepts any size; models that upsample by exactly 2
(FPN, Unet++, ...) need sides divisible by ``output_stride`` (smp checks and says so).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fastadl.nn.derived.autodeeplab import AutoDeepLab
from fastadl.nn.derived.backbone import AutoDeepLabFeatures, build_network, feature_positions
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype

DEFAULT_NAME = "fastadl-autodeeplab"


class SmpEncoder(nn.Module):
    """smp's encoder interface over AutoDeepLabFeatures (duck-typed: smp's EncoderMixin lives in
    a private module of smp; this class implements what smp's models call).

    x (N, C_in, H, W) → [x, f/2, f/4, ..., f/2^depth]; ``out_channels`` lists their channels.
    genotype / model (preset or int width) / kwargs: as ``autodeeplab_backbone``; or network:
    a built or trained AutoDeepLab, whose stem and cells (and weights) are used.
    """

    def __init__(
        self,
        genotype: Genotype | dict = PAPER_GENOTYPE,
        model: str | int = "S",
        *,
        network: AutoDeepLab | None = None,
        depth: int = 5,
        output_stride: int = 32,
        **kwargs,
    ) -> None:
        super().__init__()
        if network is None:
            network = build_network(genotype, model, **kwargs)
        reductions = [red for _, _, red, _ in feature_positions(network)]
        if not 1 <= depth <= len(reductions):
            raise ValueError(
                f"encoder depth {depth}: this genotype's path gives {len(reductions)} feature "
                f"levels (reductions {reductions}); use encoder_depth <= {len(reductions)} "
                "(a path that reaches level 3 gives 5)"
            )
        self.features = AutoDeepLabFeatures(network, out_indices=range(depth))
        self._depth = depth
        self._in_channels = self.features.stem.conv0[0].in_channels
        self._out_channels = [self._in_channels, *self.features.feature_info.channels()]
        self._output_stride = self.features.feature_info.reduction(-1)
        # output_stride: smp passes it here and then calls make_dilated when it is not 32.

    @property
    def out_channels(self) -> list[int]:
        return list(self._out_channels)

    @property
    def output_stride(self) -> int:
        return self._output_stride

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        """Another number of input channels: a fresh first conv (smp calls this after building)."""
        if in_channels == self._in_channels:
            return
        if self.features.input_scale is not None:
            raise ValueError(
                f"in_channels {in_channels}: this network maps {self._in_channels}-channel inputs "
                "with a fixed per-channel affine (its input_norm); build the encoder from a "
                "genotype instead of a trained network to change the input channels"
            )
        old = self.features.stem.conv0[0]
        self.features.stem.conv0[0] = nn.Conv2d(
            in_channels, old.out_channels, 3, stride=2, padding=1, bias=False
        )
        self._in_channels = in_channels
        self._out_channels[0] = in_channels

    def make_dilated(self, output_stride: int) -> None:
        if output_stride == self._output_stride:
            return
        raise ValueError(
            f"output_stride {output_stride}: the searched path fixes where the Auto-DeepLab "
            f"network downsamples (deepest feature /{self._output_stride}); use a model without "
            "dilation (Unet, FPN, ...) or encoder_output_stride=None"
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, *self.features(x)]


def register_smp_encoder(
    name: str = DEFAULT_NAME,
    genotype: Genotype | dict = PAPER_GENOTYPE,
    model: str | int = "S",
    *,
    network: AutoDeepLab | None = None,
    **kwargs,
) -> str:
    """Register the backbone of ``genotype`` (or of a trained ``network``) in smp's encoder
    registry under ``name`` and return the name, for ``smp.Unet(encoder_name=name,
    encoder_weights=None)``. Each model smp builds gets its own copy (smp deep-copies the
    registered params, so a trained network's weights are copied, not shared)."""
    import segmentation_models_pytorch as smp  # not a dependency: pip install it (+ torchvision)

    if network is not None:
        params = {"network": network}
    else:
        if isinstance(genotype, Genotype):
            genotype = genotype.to_dict()
        params = {"genotype": copy.deepcopy(genotype), "model": model, **kwargs}
    smp.encoders.encoders[name] = {
        "encoder": SmpEncoder,
        "pretrained_settings": {},
        "params": params,
    }
    return name
