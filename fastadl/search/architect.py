"""The architecture step of the first-order bilevel search (docs/METHOD.md §3)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fastadl.runtime.distributed import all_reduce_mean
from fastadl.runtime.precision import Precision
from fastadl.runtime.steps import FiniteWatch, frozen, micro_batches, segmentation_loss


def adam(params: list[nn.Parameter], **kwargs) -> torch.optim.Adam:
    """torch.optim.Adam whose step needs no host synchronisation: the fused implementation
    (one kernel, its step counters on the device; on the CPU the same numbers as the default
    one, tests/search/test_arch_adam.py), else ``capturable`` off the CPU (where torch allows
    it), else the default one (which reads each parameter's step counter on the host)."""
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        pass
    if params[0].device.type != "cpu":
        try:
            return torch.optim.Adam(params, capturable=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, **kwargs)


class Architect:
    """Adam on α and β with gradients from a trainB batch.

    ``torch.autograd.grad(loss, [α, β])`` asks autograd for the architecture gradients only,
    with the weights frozen for the step: every backward then skips the weight-gradient work
    (native convolutions are told which gradients are wanted; the cell-level fast path's
    hand-written backward sees which inputs require them), and nothing lands in the weights'
    ``.grad``.
    """

    def __init__(
        self,
        model: nn.Module,
        arch_params: list[nn.Parameter],
        lr: float,
        betas: tuple[float, float],
        weight_decay: float,
        precision: Precision,
        regularizer: Callable[[], torch.Tensor] | None = None,
    ):
        """regularizer: a 0-d tensor computed from the architecture parameters alone (e.g. a
        collapse guard's entropy term), added to every step's loss; None = none."""
        self.model = model
        self.regularizer = regularizer
        self.params = arch_params
        arch = {id(p) for p in arch_params}
        self.weights = [p for p in model.parameters() if id(p) not in arch and p.requires_grad]
        self.optimizer = adam(self.params, lr=lr, betas=betas, weight_decay=weight_decay)
        self.precision = precision
        self.scaler = precision.make_scaler()

    def step(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        step: int,
        accumulate: int = 1,
        watch: FiniteWatch | None = None,
    ) -> torch.Tensor:
        """One Adam step on α, β from (images (N,3,H,W), masks (N,H,W)); returns the mean
        loss, a 0-d tensor.

        ``self.model`` is the bare module even under DDP: gradients of α and β are averaged
        over processes here, so DDP's weight-gradient buckets never run for this step.
        watch: where a non-finite loss or α/β gradient is noted for ``step`` on the device (see
        runtime/steps.py's weight_step); None: checked now, before α and β change.
        """
        check_now = watch is None
        watch = FiniteWatch() if check_now else watch
        grads = [torch.zeros_like(p) for p in self.params]
        losses = []
        parts = micro_batches(images, masks, accumulate)
        for x, y in parts:
            with frozen(self.weights), self.precision.autocast():
                loss = segmentation_loss(self.model(x), y)
            part = torch.autograd.grad(self.scaler.scale(loss / len(parts)), self.params)
            grads = [g + d for g, d in zip(grads, part, strict=True)]
            losses.append(loss.detach())
        watch.note("architecture loss", losses, step)
        if self.regularizer is not None:
            # once per step, outside the micro-batches (it does not depend on the batch)
            reg = self.scaler.scale(self.regularizer())
            extra = torch.autograd.grad(reg, self.params, allow_unused=True)
            grads = [g if d is None else g + d for g, d in zip(grads, extra, strict=True)]
        for p, g in zip(self.params, grads, strict=True):
            p.grad = all_reduce_mean(g).to(p.dtype)
        if not self.scaler.is_enabled():  # fp16: an inf gradient is the scaler's business
            watch.note("α/β gradient", [p.grad for p in self.params], step)
        if check_now:
            watch.check()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return torch.stack(losses).mean() if len(losses) > 1 else losses[0]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
