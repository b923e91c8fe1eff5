"""BatchNorm settings and modes across a whole network.

- ``configure_batchnorm``: set momentum / epsilon of every BatchNorm in a module (the TF model's
  moving-average decay 0.9997 is PyTorch momentum 1 - 0.9997 = 3e-4).
- ``batch_statistics``: run a network in eval mode except that every BatchNorm normalises with
  the statistics of the batch it sees, leaving the running statistics exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorms(module: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm (1d/2d/3d, SyncBatchNorm) inside ``module``, in module order."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def configure_batchnorm(
    module: nn.Module, *, momentum: float | None = None, eps: float | None = None
) -> nn.Module:
    """Set ``momentum`` and/or ``eps`` (None = keep) of every BatchNorm in ``module``; returns it."""
    if momentum is not None and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum}")
    if eps is not None and eps <= 0:
        raise ValueError(f"BatchNorm eps must be > 0, got {eps}")
    for bn in batchnorms(module):
        if momentum is not None:
            bn.momentum = momentum
        if eps is not None:
            bn.eps = eps
    return module


@contextmanager
def batch_statistics(module: nn.Module) -> Iterator[nn.Module]:
    """Inside the block every BatchNorm of ``module`` is in training mode (normalises with the
    batch's statistics); on exit each one's mode and its running_mean, running_var and
    num_batches_tracked are restored exactly (a forward in training mode updates them).

    The rest of the network keeps its mode: call it after ``module.eval()`` to validate a
    network with batch statistics. Meant for forwards under ``torch.no_grad()``.
    """
    saved = []
    for bn in batchnorms(module):
        buffers = {name: b.clone() for name, b in bn.named_buffers(recurse=False) if b is not None}
        saved.append((bn, bn.training, buffers))
        bn.train()
    try:
        yield module
    finally:
        for bn, training, buffers in saved:
            bn.train(training)
            for name, value in buffers.items():
                getattr(bn, name).copy_(value)
