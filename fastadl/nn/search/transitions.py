"""Resolution-changing preprocessing between trellis nodes: the pre(·) of docs/METHOD.md §2.

BN here is ``affine=False`` like the cell's ops (**decision**: DARTS' search-time preprocess
convention; the paper does not say).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SearchReLUConvBN(nn.Module):
    """ReLU → k×k conv (stride, 'same'-style padding) → BN, affine-free by default: the search
    side's (the derived network's is fastadl/nn/derived/ops.py's ReLUConvBN)."""

    def __init__(self, C_in: int, C_out: int, k: int = 1, stride: int = 1, affine: bool = False):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Reduce(nn.Module):
    """Downsample by 2^steps with ``steps`` ReLU → 3×3 stride-2 conv → BN steps (steps = 0: 1×1).

    A 3×3 stride-2 conv with padding 1 maps H to ceil(H/2), matching the trellis' level sizes.
    Stride 4 = two such steps (**decision**, docs/METHOD.md §2).
    """

    def __init__(self, C_in: int, C_out: int, steps: int):
        super().__init__()
        if steps == 0:
            layers = [SearchReLUConvBN(C_in, C_out, 1)]
        else:
            layers = [
                SearchReLUConvBN(C_in if i == 0 else C_out, C_out, 3, 2) for i in range(steps)
            ]
        self.op = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class UpsampleReLUConvBN(nn.Module):
    """From the coarser level: bilinear upsample to the target's exact size → ReLU → 1×1 → BN."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv = SearchReLUConvBN(C_in, C_out, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv(x)
