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
        optimizer = torch.optim.SGD(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.SGD(params, **kwargs)
    tensor_lr(optimizer)
    zero_momentum(optimizer)
    return optimizer


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


class FiniteWatch:
    """Non-finite checks kept on the device: for each watched quantity ("loss", "weight
    gradient", ...) a 0-d int64 tensor holding the first step at which it was NaN/inf (0 =
    never). Noting a value is a few device operations and no host synchronisation; ``check``
    reads them all at once (one synchronisation) and raises NonFiniteError naming the first."""

    def __init__(self) -> None:
        self.first: dict[str, torch.Tensor] = {}

    def note(self, what: str, values: list[torch.Tensor], step: int) -> None:
        """Remember ``step`` for ``what`` if any element of ``values`` is not finite (and
        ``what`` was finite until now)."""
        bad = torch.stack([torch.isfinite(v).all() for v in values]).logical_not().any()
        prev = self.first.get(what)
        if prev is None:
            prev = torch.zeros((), dtype=torch.int64, device=bad.device)
        self.first[what] = torch.where(bad & (prev == 0), step, prev)

    def check(self, where: str = "") -> None:
        """Raise NonFiniteError for the earliest non-finite quantity, its step and ``where``
        (appended to the message, e.g. which steps the check covered)."""
        if not self.first:
            return
        names = list(self.first)
        steps = torch.stack([self.first[n] for n in names]).tolist()
        # by step, then in the order first noted (a step's loss before its gradient)
        found = sorted(((s, n) for s, n in zip(steps, names, strict=True) if s), key=lambda f: f[0])
        if found:
            step, what = found[0]
            raise NonFiniteError(f"non-finite {what} at step {step}{where}")


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


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate: in place where it is a tensor (``tensor_lr``), so a
    schedule change is a device fill and no host→device copy; assigned where it is a float."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def tensor_lr(optimizer: torch.optim.Optimizer) -> None:
    """Make a fused optimizer's learning rates 0-d tensors on its parameters' device (torch's
    fused SGD and Adam read a tensor learning rate on the device, with the same numbers as a
    float one); other optimizers keep floats (their loops would read it back). float32, or
    float64 for float64 parameters: a float32 rate is the Python float rounded to 24 bits, a
    relative change of up to 6e-8 in every float64 update."""
    if not optimizer.defaults.get("fused"):
        return
    for group in optimizer.param_groups:
        lr = group["lr"]
        first = group["params"][0]
        dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
        if not isinstance(lr, torch.Tensor) or lr.device != first.device or lr.dtype != dtype:
            group["lr"] = torch.tensor(float(lr), dtype=dtype, device=first.device)


def zero_momentum(optimizer: torch.optim.Optimizer) -> None:
    """Give a fused SGD with momentum its momentum buffers now, as zeros. torch's fused SGD
    creates them uninitialised (``empty_like``) at its first step and fills them in the kernel;
    when a GradScaler skips that step (inf gradients: usual at fp16's first scale) they keep
    whatever the memory held and the next step adds it to the weights (torch 2.13: NaN weights
    at a tiny supernet's 2nd fp16 step; tests/search/test_flat_sgd.py). A zero buffer gives the
    same first update exactly (0.9·0 + g = g); a buffer already there is kept."""
    if not optimizer.defaults.get("fused"):
        return
    for group in optimizer.param_groups:
        if group.get("momentum"):
            for p in group["params"]:
                if optimizer.state[p].get("momentum_buffer") is None:
                    optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p.detach())


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
    watch: FiniteWatch | None = None,
) -> torch.Tensor:
    """Forward, backward and SGD step on ``params``; returns the mean loss, a 0-d tensor.

    forward: the (possibly DDP-wrapped or compiled) model; images (N,3,H,W), masks (N,H,W).
    watch: where a non-finite loss or (unscaled) gradient norm is noted for ``step``, on the
    device; the caller checks it when it reads values anyway (the loop: every few steps and
    before a checkpoint), so the step itself never waits for the device. None: checked at the
    end of this step, before the weights change (NonFiniteError; one host synchronisation).
    Under fp16 an inf gradient is the GradScaler's business (it skips the step and lowers the
    scale), not an error.
    """
    check_now = watch is None
    watch = FiniteWatch() if check_now else watch
    optimizer.zero_grad(set_to_none=True)
    parts = micro_batches(images, masks, accumulate)
    losses = []
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
            scaler.scale(loss / len(parts)).backward()
        losses.append(loss.detach())
    total = torch.stack(losses).mean() if len(losses) > 1 else losses[0]
    watch.note("loss", losses, step)
    if grad_clip > 0 or not scaler.is_enabled():
        scaler.unscale_(optimizer)
        norm = total_grad_norm(params)
        if not scaler.is_enabled():
            watch.note("weight gradient", [norm], step)
        if grad_clip > 0:
            if hasattr(nn.utils, "clip_grads_with_norm_"):  # the norm is already known
                nn.utils.clip_grads_with_norm_(params, grad_clip, norm, foreach=True)
            else:
                nn.utils.clip_grad_norm_(params, grad_clip)
    if check_now:  # before the weights change
        watch.check()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total
