"""PC-DARTS' partial channels around a mixed op (Xu et al., "PC-DARTS", ICLR 2020).

An edge with ``partial_channels=K`` mixes only its first C/K channels; the other C - C/K pass
through untouched (at stride 2 through a 2×2 max pool, as in PC-DARTS), and a channel shuffle
with K groups interleaves the two so that the next edge mixes different channels. Edge
normalisation (PC-DARTS' β over a node's inputs) belongs to the caller's cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def split_channels(x: Tensor, K: int) -> tuple[Tensor, Tensor]:
    """x: (N, C, H, W) → (the C/K channels to mix, the C - C/K that pass through), views."""
    Cg = x.shape[1] // K
    return x[:, :Cg], x[:, Cg:]


def pass_through(rest: Tensor, stride: int) -> Tensor:
    """The channels that are not mixed: as they are at stride 1, 2×2 max-pooled at stride 2.

    ceil_mode: on an odd H the pool keeps ceil(H/2) rows like the mixed ops (**decision**:
    PC-DARTS' floor-mode pool gives a size mismatch there and its code fails)."""
    return rest if stride == 1 else F.max_pool2d(rest, 2, 2, ceil_mode=True)


def shuffle_merge(mixed: Tensor, rest: Tensor, K: int) -> Tensor:
    """channel_shuffle(cat([mixed, rest], 1), K) in one concatenation.

    mixed: (N, C/K, H, W), rest: (N, C - C/K, H, W) → (N, C, H, W). PC-DARTS' shuffle views the
    concatenation as K groups of C/K channels and transposes (group, channel): output channel
    i·K + g is channel i of group g, group 0 being ``mixed``."""
    N, Cg, H, W = mixed.shape
    groups = rest.reshape(N, K - 1, Cg, H, W).transpose(1, 2)  # (N, Cg, K - 1, H, W)
    return torch.cat([mixed.unsqueeze(2), groups], dim=2).view(N, Cg * K, H, W)
