"""BatchNorm helpers every fast path shares (the per-edge `fused` backend, the cell path): which
statistics a group of BNs normalises with, and their running statistics updated for all of
them at once, exactly as their own forwards would."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def batch_stats_mode(bns: list[nn.BatchNorm2d]) -> bool | None:
    """True: all BNs normalise with batch statistics; False: all with running ones; None: mixed
    (or their eps differ), which the fused path does not cover."""
    modes = {bn.training or bn._buffers.get("running_mean") is None for bn in bns}
    if len(modes) > 1 or len({bn.eps for bn in bns}) > 1:
        return None
    return modes.pop() if modes else True


@torch.no_grad()
def update_bn_running_stats(bns, stats: Tensor, count: int) -> None:
    """What BatchNorm2d.forward does to its buffers in training mode, for every BN at once.

    stats: (2·len(bns), C) batch means, then biased variances (consumed)."""
    n = len(bns)
    stats[n:].mul_(count / (count - 1))  # running_var tracks the unbiased variance
    if not all(bn.training and bn.track_running_stats for bn in bns):
        rows = [i for i, bn in enumerate(bns) if bn.training and bn.track_running_stats]
        stats = stats[rows + [n + i for i in rows]]
        bns = [bns[i] for i in rows]
        if not bns:
            return
    # (module._buffers: the buffers themselves, without nn.Module.__getattr__'s cost)
    torch._foreach_add_([bn._buffers["num_batches_tracked"] for bn in bns], 1)
    buffers = [bn._buffers["running_mean"] for bn in bns]
    buffers += [bn._buffers["running_var"] for bn in bns]
    new = stats.to(buffers[0].dtype).unbind(0)
    momenta = {bn.momentum for bn in bns}
    if len(momenta) == 1 and None not in momenta:  # the usual case: one foreach update
        torch._foreach_lerp_(buffers, new, momenta.pop())
        return
    for i, bn in enumerate(bns + bns):  # momentum None: cumulative average, per module
        f = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        buffers[i].lerp_(new[i].to(buffers[i].dtype), f)
