"""Multiply-adds of a model at a given input size, counted by torch.utils.flop_counter.

FlopCounterMode counts 2 FLOPs per multiply-add of convolutions and matrix products (it ignores
BN, ReLU, pooling, resizing and additions, as the paper's multiply-add counts do), so
multiply-adds = flops / 2. The forward runs on the meta device: parameters and buffers are
swapped for meta tensors through torch.func.functional_call, so nothing real is computed or
allocated and the model itself (weights, BN statistics, mode) is left untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode


def count_multiply_adds(
    model: nn.Module, size: tuple[int, int] = (1024, 2048), in_channels: int = 3, batch: int = 1
) -> float:
    """Multiply-adds of one eval-mode forward of ``model`` on a (batch, in_channels, *size) input."""
    return multiply_adds_on(model, [(batch, in_channels, *size)])


def multiply_adds_on(model: nn.Module, shapes: Sequence[Sequence[int]]) -> float:
    """Multiply-adds of one eval-mode forward of ``model`` on inputs of ``shapes`` (one tensor
    per positional argument)."""
    meta = {
        name: torch.empty_like(t, device="meta")
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    xs = tuple(torch.empty(*shape, device="meta") for shape in shapes)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            functional_call(model, meta, xs, strict=False)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2
