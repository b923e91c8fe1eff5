"""One optimisation step on the network weights, shared by the search and training loops.

A step may be split into ``accumulate`` micro-batches: item j of the batch goes to micro-batch
j mod accumulate, and the gradient is the mean of the micro-batch gradients. That is exactly
what ``accumulate`` DistributedDataParallel processes compute (each rank's BatchNorm sees its own
share; torch's DistributedSampler deals the items round-robin), so a 1-process run reproduces a
multi-process one, and a small GPU can run the paper's batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from fastadl.runtime.precision import Precision


@contextlib.contextmanager
def frozen(params: list[nn.Parameter]):
    """Temporarily stop gradients to ``params``: the weight step needs none for α and β, and
    the α/β step none for the weights (the cell-level fast path's hand-written backward only
    learns which gradients are wanted from which inputs require them)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


def sgd(params: list[nn.Parameter], **kwargs) -> torch.optim.SGD:
    """torch.optim.SGD, its fused implementation where this torch has one for these tensors:
    the same update in one kernel instead of a Python loop over ~11,000 supernet tensors
    (about 4x faster on the search's CPU step)."""
    try:
        return torch.optim.SGD(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.SGD(params, **kwargs)


def stepped_parameters(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """The tensors ``optimizer`` steps (for FlatSGD: its one flat parameter), which is what
    gradient clipping should read: the same gradients in the fewest tensors."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def total_grad_norm(params: list[nn.Parameter]) -> torch.Tensor:
    """The 2-norm of all of ``params``' gradients together (one foreach call where available)."""
    grads = [p.grad for p in params if p.grad is not None]
    if hasattr(nn.utils, "get_total_norm"):
        return nn.utils.get_total_norm(grads, foreach=True)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN/inf: the run stops and the last checkpoint is kept."""


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy in float32, ignore label 255. logits (N,K,H,W), masks (N,H,W)."""
    return nn.functional.cross_entropy(logits.float(), masks, ignore_index=255)


def micro_batches(images: torch.Tensor, masks: torch.Tensor, accumulate: int):
    """Split a batch round-robin into ``accumulate`` micro-batches (see the module docstring)."""
    if images.shape[0] % accumulate:
        raise ValueError(
            f"batch of {images.shape[0]} does not split into {accumulate} micro-batches"
        )
    return [(images[k::accumulate], masks[k::accumulate]) for k in range(accumulate)]


def check_finite(loss: torch.Tensor, what: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteError(f"non-finite {what} ({loss.item()}) at step {step}")


def weight_step(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    masks: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    params: list[nn.Parameter],
    step: int,
    accumulate: int = 1,
    grad_clip: float = 0.0,
) -> float:
    """Forward, backward and SGD step on ``params``; returns the mean loss.

    forward: the (possibly DDP-wrapped or compiled) model; images (N,3,H,W), masks (N,H,W).
    Raises NonFiniteError before touching the weights if the loss or (unscaled) gradient is
    not finite.
    """
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    parts = micro_batches(images, masks, accumulate)
    for k, (x, y) in enumerate(parts):
        last = k == len(parts) - 1
        # DDP: all-reduce only once, on the last micro-batch
        sync = (
            contextlib.nullcontext()
            if last or not hasattr(forward, "no_sync")
            else forward.no_sync()
        )
        with sync:
            with precision.autocast():
                loss = segmentation_loss(forward(x), y)
            check_finite(loss, "loss", step)
            scaler.scale(loss / len(parts)).backward()
        total += loss.item() / len(parts)
    if grad_clip > 0 or not scaler.is_enabled():
        scaler.unscale_(optimizer)
        norm = total_grad_norm(params)
        # fp16: an inf gradient is the scaler's business (it skips the step and lowers the scale)
        if not scaler.is_enabled() and not torch.isfinite(norm):
            raise NonFiniteError(f"non-finite weight gradient at step {step}")
        if grad_clip > 0:
            if hasattr(nn.utils, "clip_grads_with_norm_"):  # the norm is already known
                nn.utils.clip_grads_with_norm_(params, grad_clip, norm, foreach=True)
            else:
                nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total
