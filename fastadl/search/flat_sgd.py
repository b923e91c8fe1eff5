"""SGD over one flat buffer: the supernet's ~11,000 weight tensors stepped as one tensor.

The search's weight step clips the gradient norm and steps SGD over every weight tensor; with
~11,000 small tensors on a CPU each of those (norm, scale, SGD, zeroing) is a loop of
per-tensor calls that cost more than the arithmetic (~0.2 s of a 2 s iteration at the anchor
setting, docs/PERFORMANCE.md). FlatSGD packs the parameters' data and gradients into two flat
buffers: every parameter stays the same nn.Parameter (modules, state_dict, requires_grad all
unchanged) but its ``.data`` and ``.grad`` are views of the buffers, so autograd accumulates
each gradient in place into the flat gradient and the optimizer, the clipping and the zeroing
see one tensor.

**decision**: torch's SGD skips a parameter whose ``.grad`` is None (no decay, no momentum);
here every parameter always has a (zeroed) gradient. In the supernet every weight receives a
gradient in every weight step (tests/search/test_flat_sgd.py checks it), so the updates are the same.

Contract: build it after the model has its final device and dtype (``.to()`` replaces the
parameters' tensors and would cut the views); zero gradients with ``zero_grad()`` (which keeps
the buffer); a parameter whose ``.grad`` someone replaced is noticed at ``step()`` (ValueError)
rather than silently left out of the update.
"""

from __future__ import annotations

import torch
from torch import nn

from fastadl.ops.cell.weights import bind_stacked_weights, packing_order
from fastadl.runtime.steps import tensor_lr, zero_momentum


class FlatSGD(torch.optim.SGD):
    """torch.optim.SGD on ``params`` packed into one flat parameter (see the module docstring).

    params: same dtype and device. ``flat``: the (n,) parameter the optimizer steps, its
    ``.grad`` the flat gradient; ``packed``: the original parameters, in packing order."""

    def __init__(
        self, params: list[nn.Parameter], plain_order: list[nn.Parameter] | None = None, **kwargs
    ):
        """plain_order: the parameter order of a plain SGD whose saved state this one may
        load (default: ``params``' own order)."""
        params = list(params)
        if not params:
            raise ValueError("FlatSGD needs at least one parameter")
        first = params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in params):
            raise ValueError("FlatSGD needs parameters of one dtype and device")
        with torch.no_grad():
            flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
        flat.grad = torch.zeros_like(flat)
        self.packed = params
        position = {id(p): i for i, p in enumerate(params)}
        self._plain = [position[id(p)] for p in (plain_order or params)]
        self.flat = flat
        self._views = []
        offset = 0
        for p in params:
            n = p.numel()
            p.data = flat.data[offset : offset + n].view_as(p)
            p.grad = flat.grad[offset : offset + n].view_as(p)
            self._views.append(p.grad)
            offset += n
        try:
            super().__init__([flat], fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            super().__init__([flat], **kwargs)
        tensor_lr(self)  # a schedule's change is then a fill on the device (steps.set_lr)
        zero_momentum(self)  # fp16: a first step the GradScaler skips leaves no garbage

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the flat gradient in place (``set_to_none`` is ignored: the buffer is kept)."""
        self.flat.grad.zero_()

    def check_gradients(self) -> None:
        """Raise ValueError if some parameter's ``.grad`` is no longer its view of the buffer
        (e.g. a ``model.zero_grad()`` set it to None): its gradient would be lost."""
        for i, (p, view) in enumerate(zip(self.packed, self._views, strict=True)):
            if p.grad is not view:
                raise ValueError(
                    f"FlatSGD: parameter {i} {tuple(p.shape)} has a gradient outside the flat "
                    "buffer (zero gradients with the optimizer's zero_grad(), not the model's)"
                )

    @torch.no_grad()
    def step(self, closure=None):
        self.check_gradients()
        return super().step(closure)

    def load_state_dict(self, state_dict: dict) -> None:
        """Also takes a plain SGD's state over the same parameters in ``plain_order`` (one
        momentum buffer per parameter): its buffers are packed into the flat one."""
        groups = state_dict["param_groups"]
        n_saved = sum(len(g["params"]) for g in groups)
        if n_saved == len(self.packed) != 1:
            state = state_dict["state"]
            ids = [i for g in groups for i in g["params"]]
            bufs = [None] * len(ids)
            for i, at in zip(ids, self._plain, strict=True):
                bufs[at] = state.get(i, {}).get("momentum_buffer")
            packed = {}
            if all(b is not None for b in bufs):
                packed[0] = {"momentum_buffer": torch.cat([b.reshape(-1) for b in bufs])}
            group = {k: v for k, v in groups[0].items() if k != "params"} | {"params": [0]}
            state_dict = {"state": packed, "param_groups": [group]}
        super().load_state_dict(state_dict)
        tensor_lr(self)  # a saved float (or a tensor on another device) becomes ours again
        zero_momentum(self)  # a state saved before any step has no buffer


def search_weight_optimizer(model: nn.Module, distributed: bool, **hyper) -> FlatSGD:
    """The search's weight optimizer: FlatSGD over ``model.weight_parameters()`` packed so
    each search cell's weight kinds are contiguous, with the cells' stacked weights bound to
    the buffer (fastadl/ops/cell/weights.py) unless ``distributed`` (DDP's gradient hooks sit
    on the edges' own parameters)."""
    weights = model.weight_parameters()
    optimizer = FlatSGD(packing_order(model, weights), plain_order=weights, **hyper)
    if not distributed:
        bind_stacked_weights(model, optimizer.flat)
    return optimizer
