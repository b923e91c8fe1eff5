"""What the cell-level fast path needs to know about a search cell, built once and cached.

A search cell's edges are grouped by the state they read (docs/ARCHITECTURE.md "The node as
the unit of work"): state 0 = H^{l-2} and state 1 = H^{l-1} are read by every block, the output
of block b by blocks b+1..B-1. The cell's conv weights are passed to the autograd Function
kind-major (all edges' first depthwise weights of conv 0, then of conv 1, ...), the edges of each
kind in group order, so each group's stacked weights are one contiguous slice of one
concatenation. The BatchNorm modules are listed in the order of the statistics rows
fastadl/ops/cell/function.py returns, and their running statistics are rows of three cell-wide
tensors (each module's buffers are views of one row), so the update after a forward is a few
calls instead of a few per module (see StackedStats).
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from itertools import chain

import torch
from torch import Tensor, nn

from fastadl.ops.bn_stats import batch_stats_mode, update_bn_running_stats
from fastadl.ops.edge.fused import cached_plan
from fastadl.ops.edge.plan import EdgePlan
from fastadl.space.cell_topology import edge_index


@dataclass(frozen=True)
class Group:
    index: int  # position in the cell's group list
    state: int  # 0 = H^{l-2}, 1 = H^{l-1}, 2 + b = block b's output
    first_block: int  # the group's edges feed blocks first_block..B-1, in that order
    offset: int  # position of its first edge in the group-ordered edge list
    size: int  # E, its number of edges


@dataclass(frozen=True, eq=False)
class CellPlan:
    edge: EdgePlan  # the same for every edge
    blocks: int
    C: int
    groups: tuple[Group, ...]
    order: tuple[int, ...]  # α row of each edge, in group order
    conv_modules: tuple[nn.Conv2d, ...]  # kind-major, edges in group order
    bns: tuple[nn.BatchNorm2d, ...]  # statistics-row order (see bn_rows)
    eps: float
    _index: dict

    @property
    def kinds(self) -> int:
        return 2 * self.edge.R

    @functools.cached_property
    def pointwise(self) -> tuple[bool, ...]:
        """Per weight kind: True for a pointwise (C, C, 1, 1) weight, False for a depthwise one."""
        J, S = self.edge.J, self.edge.S
        return tuple(J <= t < 2 * J or t >= 2 * J + S for t in range(self.kinds))

    @property
    def edges(self) -> int:
        return len(self.order)

    def rows(self, device: torch.device) -> Tensor:
        """α rows in group order as a long tensor on ``device`` (cached)."""
        hit = self._index.get(device)
        if hit is None:
            hit = self._index[device] = torch.tensor(self.order, device=device)
        return hit


def make_groups(blocks: int) -> tuple[Group, ...]:
    groups, offset = [], 0
    for state in range(blocks + 1):  # the last block's output is read by no edge
        first = max(0, state - 1)
        groups.append(Group(state, state, first, offset, blocks - first))
        offset += blocks - first
    return tuple(groups)


def build_cell_plan(edges: nn.ModuleList, blocks: int, C: int) -> CellPlan | None:
    """The plan of a cell whose MixedOps are ``edges`` (α row order), or None when some edge
    is outside what the fused path covers or the edges differ in structure."""
    groups = make_groups(blocks)
    order = [edge_index(g.first_block + i, g.state) for g in groups for i in range(g.size)]
    built = []
    for row in order:
        op = edges[row]
        b = cached_plan(op.ops, op.primitives, C)
        if b is None or (built and b[0] != built[0][0]) or b[0].stride != 1 or b[0].reduce:
            return None  # resolution-changing (DARTS reduction) edges run edge by edge
        built.append(b)
    plan = built[0][0]
    kinds = len(built[0][1])
    conv_modules = tuple(b[1][t] for t in range(kinds) for b in built)
    # statistics rows per group: each pool (one row per edge), then conv rows (r, e)
    bns = []
    for g in groups:
        part = built[g.offset : g.offset + g.size]
        for k in range(plan.P):
            bns += [b[2][k] for b in part]
        for r in range(plan.R):
            bns += [b[2][plan.P + r] for b in part]
    eps = {bn.eps for bn in bns}
    if len(eps) > 1:
        return None
    return CellPlan(plan, blocks, C, groups, tuple(order), conv_modules, tuple(bns),
                    eps.pop() if eps else 1e-5, {})  # fmt: skip


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_cell_plan(cell: nn.Module) -> CellPlan | None:
    """build_cell_plan for a SearchCell, remembered while its op modules stay the same."""
    key = tuple(map(id, chain.from_iterable(e.ops._modules.values() for e in cell.edges)))
    hit = _PLANS.get(cell)
    if hit is None or hit[0] != key:
        hit = (key, build_cell_plan(cell.edges, cell.blocks, cell.C))
        _PLANS[cell] = hit
    return hit[1]


class StackedStats:
    """A cell's BatchNorm running statistics as rows of (n_bn, C) mean and var and (n_bn,)
    batch-count tensors, with every module's buffers re-pointed to views of its rows.

    The modules keep their buffers (state_dict keys, load_state_dict, DDP's buffer broadcast
    all work on the views); ``valid()`` notices when something replaced them (``.to()``,
    ``.double()``, a reassignment), and the caller then stacks again.
    """

    NAMES = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, bns: tuple[nn.BatchNorm2d, ...]):
        self.bns = bns
        with torch.no_grad():
            self.tensors = [torch.stack([bn._buffers[k] for bn in bns]) for k in self.NAMES]
        self.views = []
        for i, bn in enumerate(bns):
            for k, t in zip(self.NAMES, self.tensors, strict=True):
                bn._buffers[k] = view = t[i]
                self.views.append(view)
        self.momentum = bns[0].momentum

    def valid(self) -> bool:
        # Module._apply (.to(), .double(), ...) replaces every buffer, so the first and last
        # module's tell; checking all ~480 buffers would cost more than the update itself.
        first, last = self.bns[0]._buffers, self.bns[-1]._buffers
        return (first["running_mean"] is self.views[0]
                and last["num_batches_tracked"] is self.views[-1])  # fmt: skip

    @torch.no_grad()
    def update(self, means: Tensor, variances: Tensor, count: int) -> None:
        """BatchNorm2d's training-mode update, once per path in order (means, variances:
        (P, n_bn, C) batch statistics, biased; count: values per channel per path)."""
        mean, var, batches = self.tensors
        unbiased = count / (count - 1)
        for p in range(means.shape[0]):
            batches.add_(1)
            mean.lerp_(means[p].to(mean.dtype), self.momentum)
            var.lerp_(variances[p].to(var.dtype) * unbiased, self.momentum)


def stackable(bns: tuple[nn.BatchNorm2d, ...]) -> bool:
    """Whether StackedStats covers these modules: all track running statistics of one dtype
    and device with the same (non-None) momentum."""
    if not bns or any(not bn.track_running_stats or bn.running_mean is None for bn in bns):
        return False
    first = bns[0].running_mean
    return (
        len({bn.momentum for bn in bns}) == 1
        and bns[0].momentum is not None
        and all(
            bn.running_mean.dtype == first.dtype and bn.running_mean.device == first.device
            for bn in bns
        )
    )


_STATS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def stacked_stats(cell: nn.Module, plan: CellPlan) -> StackedStats | None:
    """The cell's StackedStats (made, or made again when its views were replaced), or None."""
    hit = _STATS.get(cell)
    if hit is not None and hit.bns is plan.bns and hit.valid():
        return hit
    if not stackable(plan.bns):
        return None
    _STATS[cell] = hit = StackedStats(plan.bns)
    return hit


def stacked_weights(plan: CellPlan) -> list[Tensor]:
    """One tensor per weight kind: the cell's conv weights concatenated in group order,
    depthwise (E·C, 1, k, k) and pointwise (E·C, C, 1, 1). Under autograd the concatenation's
    backward hands each module's weight its slice of the stacked gradient."""
    n, mods = plan.edges, plan.conv_modules
    return [
        torch.cat([m._parameters["weight"] for m in mods[t * n : (t + 1) * n]])
        for t in range(plan.kinds)
    ]


def batch_mode(plan: CellPlan) -> bool | None:
    """True: every BN uses batch statistics; False: running ones; None: mixed."""
    return batch_stats_mode(list(plan.bns))


def running_stats(plan: CellPlan, stats: StackedStats | None) -> tuple[Tensor, Tensor] | None:
    """(mean, var), each (n_bn, C) in statistics-row order, for eval mode; None when some
    group's edges hold different running statistics for a pool BN (they see the same inputs,
    so they agree unless a loaded state made them differ: the caller then falls back)."""
    if stats is not None:
        mean, var = stats.tensors[:2]
    else:
        mean = torch.stack([bn._buffers["running_mean"] for bn in plan.bns])
        var = torch.stack([bn._buffers["running_var"] for bn in plan.bns])
    row, P = 0, plan.edge.P
    for g in plan.groups:
        if P:
            for t in (mean, var):
                pools = t[row : row + P * g.size].view(P, g.size, -1)
                if not torch.equal(pools, pools[:, :1].expand_as(pools)):
                    return None
        row += (P + plan.edge.R) * g.size
    return mean, var


def update_running_stats(plan: CellPlan, stats: StackedStats | None, means: Tensor,
                         variances: Tensor, count: int) -> None:  # fmt: skip
    """Apply the batch statistics of every path in order, as the reference's sequence of
    per-path evaluations does. means, variances: (P, n_bn, C); count: positions per path."""
    if stats is not None:
        stats.update(means, variances, count)
        return
    bns = list(plan.bns)
    for p in range(means.shape[0]):
        update_bn_running_stats(bns, torch.cat([means[p], variances[p]]), count)
