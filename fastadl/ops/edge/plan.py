"""What one edge of the `fused` backend computes (``EdgePlan``, built from its op modules by
fused.py) and the mixing-weight columns of its rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class ConvSpec:
    index: int  # column of the mixing weights
    kernel: int
    dilation: int
    separable: bool  # True: a second ReLU → dw → pw → BN stage follows
    dilation2: int = 1  # of the second stage's depthwise conv


@dataclass(frozen=True)
class EdgePlan:
    """What an edge computes; built from its op modules by fastadl/ops/edge/fused.py.

    BN slots: the pools', then one per Z row. convs: separable first (Z row order). params:
    dw1 (J), pw1 (J), dw2 (S), pw2 (S), then the reduce's two 1×1 convs (2·F). The
    counts and orders below are derived once here: the forward runs ~2,100 times a step.
    """

    skip: tuple[int, ...]  # at most one
    pools: tuple[tuple[int, str], ...]  # (index, "max" | "avg")
    convs: tuple[ConvSpec, ...]
    stride: int = 1  # of the pools and the first depthwise convs
    reduce: tuple[int, ...] = ()  # the factorized reduce (stride 2's skip_connect), at most one
    _index_cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        P, J = len(self.pools), len(self.convs)
        S = sum(c.separable for c in self.convs)
        F = len(self.reduce)
        derived = dict(
            P=P, J=J, S=S, F=F, A=P + len(self.skip), R=J + S, n_bn=P + J + S + F,
            pool_kinds=tuple(kind for _, kind in self.pools),
            dil1=tuple(c.dilation for c in self.convs),
            dil2=tuple(c.dilation2 for c in self.convs[:S]),
            # param slot of each pointwise weight: rows S..R-1 (finals), rows 0..S-1
            slots_final=tuple(J + r if r < J else J + S + r for r in range(S, J + S)),
            slots_sep1=tuple(J + r for r in range(S)),
        )  # fmt: skip
        for k, v in derived.items():
            object.__setattr__(self, k, v)


def index_tensors(plan: EdgePlan, device: torch.device) -> tuple[Tensor, Tensor]:
    """Mixing-weight columns of the Am rows and of the final Z rows (made once per device)."""
    hit = plan._index_cache.get(device)
    if hit is None:
        S = plan.S
        rows_a = [k for k, _ in plan.pools] + list(plan.skip)
        rows_f = [c.index for c in plan.convs[S:]] + [c.index for c in plan.convs[:S]]
        rows_f += list(plan.reduce)
        hit = tuple(torch.tensor(v, dtype=torch.long, device=device) for v in (rows_a, rows_f))
        plan._index_cache[device] = hit
    return hit
