"""Reference (plain PyTorch) modules for the 8 search-time primitives: the ground truth.

Definitions follow docs/METHOD.md §1 (DARTS conventions, BN ``affine=False`` during
search). Auto-DeepLab's cells only use stride 1; DARTS-style reduction cells build their edges
from the two cell inputs with ``stride=2``, with DARTS' semantics: strided pools, the first
depthwise conv of sep/dil convs strided (a sep conv's second repetition keeps stride 1), and
`skip_connect` becomes FactorizedReduce. Every op maps H to ceil(H / stride). Fast backends read
their parameters from these modules, so the state_dict keys are the same whatever backend runs
them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

STRIDES: tuple[int, ...] = (1, 2)


def strided_size(n: int, stride: int) -> int:
    """Output length of every op at ``stride`` on an input of length n: ceil(n / stride)."""
    return -(-n // stride)


class Zero(nn.Module):
    """The `none` op. A MixedOp never computes it (`none` only enters through α's softmax),
    except on an edge whose every candidate is `none`: then the zeros of the output's shape."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        s = self.stride
        return x.new_zeros(N, C, strided_size(H, s), strided_size(W, s))


class PoolBN(nn.Module):
    """3×3 max or average pool (padding 1, no padded zeros in the mean) then BN."""

    def __init__(self, C: int, kind: str, affine: bool = False, stride: int = 1):
        super().__init__()
        if kind not in ("max", "avg"):
            raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}")
        self.kind = kind
        self.stride = stride
        if kind == "max":
            self.pool = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            self.pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        self.bn = nn.BatchNorm2d(C, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pool(x))


class Identity(nn.Module):
    """`skip_connect` at stride 1."""

    stride = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FactorizedReduce(nn.Module):
    """`skip_connect` at stride 2 (DARTS' FactorizedReduce): ReLU → two 1×1 stride-2 convs, the
    second on the input shifted by one row and column, concatenated along channels → BN.

    C_out may be odd: conv_1 then has C_out - C_out // 2 channels, conv_2 C_out // 2 (DARTS
    requires an even C_out; **decision**: the uneven split extends it). On an odd H (or W) the
    shifted input is one row short; it is zero-padded at the bottom (right) so both halves have
    ceil(H/2) rows like every other stride-2 op (**decision**: DARTS' own code fails there).
    Layout: relu, conv_1, conv_2, bn (DARTS' names, so its state_dict keys carry over).
    """

    stride = 2

    def __init__(self, C_in: int, C_out: int, affine: bool = False):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out - C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            # oneDNN's AVX2 backward of a 1×1 stride-2 conv on channels-last tensors of fewer
            # than 8 channels (brgconv_strided:avx2 in torch 2.13.0's oneDNN 3.12) writes past
            # the input gradient: heap corruption on AVX2-only CPUs, silent on AVX-512 ones.
            # In NCHW oneDNN runs another primitive (tests/ops/test_heap_checked.py).
            x = x.contiguous()
        x = self.relu(x)
        H, W = x.shape[-2:]
        shifted = F.pad(x[:, :, 1:, 1:], (0, W % 2, 0, H % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _relu_dw_pw_bn(C: int, k: int, dilation: int, affine: bool, stride: int) -> list[nn.Module]:
    """ReLU → depthwise k×k (given dilation and stride, 'same' padding) → pointwise 1×1 → BN."""
    pad = dilation * (k - 1) // 2
    return [
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, k, stride, padding=pad, dilation=dilation, groups=C, bias=False),
        nn.Conv2d(C, C, 1, bias=False),
        nn.BatchNorm2d(C, affine=affine),
    ]


class SepConv(nn.Module):
    """`sep_conv_kxk`: (ReLU → dw k×k → pw 1×1 → BN) twice; only the first dw conv is strided
    (DARTS). Layout of ``op``: [relu, dw1, pw1, bn1, relu, dw2, pw2, bn2]."""

    def __init__(self, C: int, k: int, affine: bool = False, stride: int = 1):
        super().__init__()
        self.kernel_size = k
        self.stride = stride
        self.op = nn.Sequential(
            *_relu_dw_pw_bn(C, k, 1, affine, stride), *_relu_dw_pw_bn(C, k, 1, affine, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """`dil_conv_kxk`: ReLU → dw k×k dilation 2 (strided) → pw 1×1 → BN. Layout of ``op``:
    [relu, dw, pw, bn]."""

    def __init__(self, C: int, k: int, dilation: int = 2, affine: bool = False, stride: int = 1):
        super().__init__()
        self.kernel_size = k
        self.dilation = dilation
        self.stride = stride
        self.op = nn.Sequential(*_relu_dw_pw_bn(C, k, dilation, affine, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def _skip(C: int, affine: bool, stride: int = 1) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine)


# name -> factory(C, affine, stride=1) for the search-time ops, in the spirit of DARTS' OPS dict
# (whose factories take (C, stride, affine): here stride comes last so OPS[name](C, affine), the
# stride-1 call, stays valid).
OPS: dict[str, Callable[..., nn.Module]] = {
    "none": lambda C, affine, stride=1: Zero(stride),
    "max_pool_3x3": lambda C, affine, stride=1: PoolBN(C, "max", affine, stride),
    "avg_pool_3x3": lambda C, affine, stride=1: PoolBN(C, "avg", affine, stride),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C, affine, stride=1: SepConv(C, 3, affine, stride),
    "sep_conv_5x5": lambda C, affine, stride=1: SepConv(C, 5, affine, stride),
    "dil_conv_3x3": lambda C, affine, stride=1: DilConv(C, 3, 2, affine, stride),
    "dil_conv_5x5": lambda C, affine, stride=1: DilConv(C, 5, 2, affine, stride),
}
