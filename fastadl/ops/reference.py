"""Reference (plain PyTorch) modules for the 8 search-time primitives: the ground truth.

Definitions follow shared/AUTO_DEEPLAB.md §1 (DARTS conventions, every op stride 1, BN
``affine=False`` during search). Fast backends read their parameters from these modules, so
the state_dict keys are the same whatever backend runs them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Zero(nn.Module):
    """The `none` op. A MixedOp never calls it: `none` only enters through α's softmax."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - guarded by MixedOp
        raise RuntimeError("the `none` op is never computed; MixedOp skips it")


class PoolBN(nn.Module):
    """3×3 max or average pool (stride 1, padding 1, no padded zeros in the mean) then BN."""

    def __init__(self, C: int, kind: str, affine: bool = False):
        super().__init__()
        if kind not in ("max", "avg"):
            raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}")
        self.kind = kind
        if kind == "max":
            self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        else:
            self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.bn = nn.BatchNorm2d(C, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pool(x))


class Identity(nn.Module):
    """`skip_connect` at stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _relu_dw_pw_bn(C: int, k: int, dilation: int, affine: bool) -> list[nn.Module]:
    """ReLU → depthwise k×k (given dilation, size-preserving padding) → pointwise 1×1 → BN."""
    pad = dilation * (k - 1) // 2
    return [
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, k, padding=pad, dilation=dilation, groups=C, bias=False),
        nn.Conv2d(C, C, 1, bias=False),
        nn.BatchNorm2d(C, affine=affine),
    ]


class SepConv(nn.Module):
    """`sep_conv_kxk`: (ReLU → dw k×k → pw 1×1 → BN) twice. Layout of ``op``:
    [relu, dw1, pw1, bn1, relu, dw2, pw2, bn2]."""

    def __init__(self, C: int, k: int, affine: bool = False):
        super().__init__()
        self.kernel_size = k
        self.op = nn.Sequential(*_relu_dw_pw_bn(C, k, 1, affine), *_relu_dw_pw_bn(C, k, 1, affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """`dil_conv_kxk`: ReLU → dw k×k dilation 2 → pw 1×1 → BN. Layout of ``op``: [relu, dw, pw, bn]."""

    def __init__(self, C: int, k: int, dilation: int = 2, affine: bool = False):
        super().__init__()
        self.kernel_size = k
        self.dilation = dilation
        self.op = nn.Sequential(*_relu_dw_pw_bn(C, k, dilation, affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


# name -> factory(C, affine) for the search-time ops, in the spirit of DARTS' OPS dict.
OPS: dict[str, Callable[[int, bool], nn.Module]] = {
    "none": lambda C, affine: Zero(),
    "max_pool_3x3": lambda C, affine: PoolBN(C, "max", affine),
    "avg_pool_3x3": lambda C, affine: PoolBN(C, "avg", affine),
    "skip_connect": lambda C, affine: Identity(),
    "sep_conv_3x3": lambda C, affine: SepConv(C, 3, affine),
    "sep_conv_5x5": lambda C, affine: SepConv(C, 5, affine),
    "dil_conv_3x3": lambda C, affine: DilConv(C, 3, 2, affine),
    "dil_conv_5x5": lambda C, affine: DilConv(C, 5, 2, affine),
}
