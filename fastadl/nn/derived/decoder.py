"""ASPP and the DeepLabv3+ decoder of the final network (docs/METHOD.md §5).

As in TF deeplab (model.py / ``refine_by_decoder``) with ``aspp_with_separable_conv`` and
``decoder_use_separable_conv`` off: every conv is a plain, bias-free conv followed by BN(affine)
and ReLU, except the classifier, the network's only conv with a bias. These choices are the ones
that reproduce the paper's parameter counts (10.15 M / 21.62 M / 44.42 M for S / M / L).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastadl.nn.derived.cell import resize

# DeepLab's atrous rates at output stride 16.
BASE_ATROUS_RATES = (6, 12, 18)
BASE_OUTPUT_STRIDE = 16


def atrous_rates_for(downsample: int, base: Sequence[int] = BASE_ATROUS_RATES) -> tuple[int, ...]:
    """DeepLab's convention: rates ``base`` (6, 12, 18) at /16, scaled by 16 / downsample.

    (**decision**) The rates follow the resolution of the last cell: /8 → (12, 24, 36),
    /4 → (24, 48, 72), /32 → (3, 6, 9). The paper's path ends at /8.
    """
    return tuple(max(1, r * BASE_OUTPUT_STRIDE // downsample) for r in base)


class ConvBNReLU(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, k: int = 1, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(C_in, C_out, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(C_out),
            nn.ReLU(inplace=False),
        )


class ImagePooling(nn.Module):
    """Global average pool → 1×1 conv → BN → ReLU, broadcast back to the input's size.

    BN over an (N, C, 1, 1) batch has N values per channel; with N = 1 in training PyTorch's BN
    refuses. (**decision**) In that case this branch's BN normalises with its running statistics
    (and does not update them); every other case is ordinary BN.
    """

    def __init__(self, C_in: int, C_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(C_in, C_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.adaptive_avg_pool2d(x, 1))
        if self.training and y.shape[0] == 1:
            bn = self.bn
            y = F.batch_norm(
                y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
            )
        else:
            y = self.bn(y)
        return F.relu(y).expand(-1, -1, x.shape[2], x.shape[3])


class ASPP(nn.Module):
    """Image pooling; 1×1; three 3×3 atrous convs (all ``C`` filters) → concat (5C) → 1×1 → C
    → dropout(``dropout``), the dropout in training only.

    TF's model.py drops out after the projection (conv-BN-ReLU) with keep_prob 0.9, i.e.
    ``dropout=0.1``; the module has no parameters, so state_dicts do not depend on it.
    """

    def __init__(
        self,
        C_in: int,
        C: int = 256,
        rates: Sequence[int] = BASE_ATROUS_RATES,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ASPP dropout must be in [0, 1), got {dropout}")
        self.rates = tuple(int(r) for r in rates)
        self.image_pool = ImagePooling(C_in, C)
        self.branches = nn.ModuleList(
            [ConvBNReLU(C_in, C, 1)] + [ConvBNReLU(C_in, C, 3, r) for r in self.rates]
        )
        self.project = ConvBNReLU((2 + len(self.rates)) * C, C, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.image_pool(x)] + [b(x) for b in self.branches]
        return self.dropout(self.project(torch.cat(ys, dim=1)))


class Decoder(nn.Module):
    """DeepLabv3+ decoder: low-level 1×1 → ``C_low``; concat with the ASPP output upsampled to the
    low-level size (ASPP first, as TF); two 3×3 convs of ``C``; 1×1 classifier with bias."""

    def __init__(
        self, C_low_in: int, C_aspp: int, num_classes: int, C_low: int = 48, C: int = 256
    ) -> None:
        super().__init__()
        self.low_level = ConvBNReLU(C_low_in, C_low, 1)
        self.refine = nn.Sequential(ConvBNReLU(C_aspp + C_low, C, 3), ConvBNReLU(C, C, 3))
        self.classifier = nn.Conv2d(C, num_classes, 1, bias=True)

    def forward(self, aspp: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.low_level(low)
        y = torch.cat([resize(aspp, low.shape[-2:]), low], dim=1)
        return self.classifier(self.refine(y))
