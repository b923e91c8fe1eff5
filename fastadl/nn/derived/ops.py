"""Stride-aware candidate ops of the derived (retrained) cell: docs/METHOD.md §5.

Every op maps C channels to C channels (the cell's preprocessing brings both inputs to C) and,
with stride 2, an (h, w) map to (ceil(h/2), ceil(w/2)): the trellis' level sizes. All BN here is
affine (retraining), all convs are bias-free. Conventions follow the authors' TF model
(tensorflow/models research/deeplab/core/nas_cell.py), where the paper is silent:

- ``sep_conv_kxk``: (ReLU → depthwise k×k → pointwise 1×1 → BN) twice; the stride sits in the
  depthwise conv of the *first* repetition (TF: ``stride = 1`` after the first layer).
- ``dil_conv_kxk``: a **dense** k×k conv with dilation 2 (ReLU → conv → BN). This is what
  reproduces the paper's parameter counts (§5). With stride 2 (**decision**) we use the same conv
  with stride 2; the TF model instead bilinearly halves the input and applies a rate-1 conv.
  Both have the same parameters and the same multiply-adds; ours is one op and keeps the
  ceil(h/2) size rule of every other strided op.
- ``max_pool_3x3`` / ``avg_pool_3x3``: 3×3 pooling, padding 1 (``count_include_pad=False``, TF's
  'SAME' average), no BN and no parameters (TF and DARTS' derived networks alike; the search-time
  BN(affine=False) after pools only rescales inside the mixture).
- ``skip_connect``: identity at stride 1. At stride 2 (**decision**, following TF's identity op,
  which it calls 'none'): ReLU → 1×1 conv stride 2 → BN, rather than DARTS' FactorizedReduce.
"""

from __future__ import annotations

import torch
from torch import nn

from fastadl.space.primitives import DERIVED_PRIMITIVES


class ReLUConvBN(nn.Sequential):
    """ReLU → k×k conv (bias-free, 'same' padding for odd k) → BN(affine)."""

    def __init__(
        self, C_in: int, C_out: int, k: int = 1, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in,
                C_out,
                k,
                stride=stride,
                padding=dilation * (k // 2),
                dilation=dilation,
                bias=False,
            ),
            nn.BatchNorm2d(C_out),
        )


class SepConv(nn.Sequential):
    """(ReLU → depthwise k×k → pointwise 1×1 → BN) × 2, stride in the first depthwise conv."""

    def __init__(self, C: int, k: int, stride: int = 1) -> None:
        layers: list[nn.Module] = []
        for rep in range(2):
            s = stride if rep == 0 else 1
            layers += [
                nn.ReLU(inplace=False),
                nn.Conv2d(C, C, k, stride=s, padding=k // 2, groups=C, bias=False),
                nn.Conv2d(C, C, 1, bias=False),
                nn.BatchNorm2d(C),
            ]
        super().__init__(*layers)


class DilConv(ReLUConvBN):
    """ReLU → dense k×k conv, dilation 2 (stride 1 or 2) → BN."""

    def __init__(self, C: int, k: int, stride: int = 1) -> None:
        super().__init__(C, C, k, stride=stride, dilation=2)


class Pool(nn.Module):
    """3×3 max or average pooling (padding 1, stride 1 or 2); no BN, no parameters."""

    def __init__(self, kind: str, stride: int = 1) -> None:
        super().__init__()
        if kind == "max":
            self.pool = nn.MaxPool2d(3, stride=stride, padding=1)
        elif kind == "avg":
            self.pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        else:
            raise ValueError(f"unknown pooling {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


def make_op(name: str, C: int, stride: int = 1) -> nn.Module:
    """The derived op ``name`` (one of DERIVED_PRIMITIVES) on C channels with ``stride``."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else ReLUConvBN(C, C, 1, stride=2)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return Pool(name[:3], stride)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        return SepConv(C, int(name[-1]), stride)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return DilConv(C, int(name[-1]), stride)
    raise ValueError(f"op {name!r} is not one of {DERIVED_PRIMITIVES}")
