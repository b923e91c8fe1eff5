"""A cell's stacked conv weights without copies: leaves over the optimizer's flat buffer.

The cell path reads each weight kind of a cell (e.g. every edge's first sep_conv_3x3
depthwise weight) as one stacked tensor (fastadl/ops/cell/plan.py::stacked_weights). Stacking
by concatenation copies ~240 tensors per cell in every forward, and autograd's backward of the
concatenation hands each of them its slice: ~11,000 AccumulateGrad calls per weight step.

When the search's FlatSGD (fastadl/search/flat_sgd.py) packs each cell's kinds contiguously
(``packing_order``), every kind is one region of the flat buffer. ``bind_stacked_weights``
then makes, per region, a leaf tensor whose data and gradient view that region, and the cell
path passes the leaf: no copy in the forward, one in-place accumulation per kind in the
backward. The edges' own parameters view the same memory, so the edge-by-edge path,
state_dict and the optimizer all see the same weights.

A binding is used only while it still holds: the kind's first and last edge weights must
still view the leaf's memory (a ``.to()`` or an assigned state replaces them; the cell path
then concatenates as before). Not for DistributedDataParallel, whose gradient hooks sit on
the edges' parameters (the search binds only in single-process runs).
"""

from __future__ import annotations

import weakref

from torch import Tensor, nn

from fastadl.ops.cell.plan import CellPlan, cached_cell_plan


def _cells(model: nn.Module):
    """(cell, plan) for every module with a cell-path plan (SearchCells on the fast backends)."""
    for m in model.modules():
        if hasattr(m, "edges") and hasattr(m, "blocks"):
            plan = cached_cell_plan(m)
            if plan is not None:
                yield m, plan


def _kind_params(plan: CellPlan) -> list[list[nn.Parameter]]:
    n, mods = plan.edges, plan.conv_modules
    return [[m._parameters["weight"] for m in mods[t * n : (t + 1) * n]] for t in range(plan.kinds)]


def packing_order(model: nn.Module, params: list[nn.Parameter]) -> list[nn.Parameter]:
    """``params`` reordered so that each cell's weight kinds are contiguous runs (kind-major,
    edges in group order, as stacked_weights stacks them); every other parameter follows in
    its given order."""
    wanted = {id(p) for p in params}
    first, seen = [], set()
    for _, plan in _cells(model):
        for kind in _kind_params(plan):
            if all(id(p) in wanted and id(p) not in seen for p in kind):
                first += kind
                seen.update(map(id, kind))
    return first + [p for p in params if id(p) not in seen]


_BOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # first conv module → leaves


def bind_stacked_weights(model: nn.Module, flat: nn.Parameter) -> int:
    """Make leaves over ``flat`` for every cell whose kinds are contiguous in it; returns the
    number of cells bound. ``flat``: FlatSGD's flat parameter (its ``.grad`` the flat
    gradient)."""
    base, gbase = flat.data, flat.grad
    size = flat.element_size()
    bound = 0
    for _, plan in _cells(model):
        leaves = []
        for kind in _kind_params(plan):
            start = (kind[0].data_ptr() - base.data_ptr()) // size
            n = sum(p.numel() for p in kind)
            shape = (sum(p.shape[0] for p in kind), *kind[0].shape[1:])
            contiguous = all(  # each weight right after the one before it
                q.data_ptr() == p.data_ptr() + p.numel() * size
                for p, q in zip(kind[:-1], kind[1:], strict=True)
            )
            if start < 0 or start + n > base.numel() or not contiguous:
                leaves = None
                break
            leaf = base[start : start + n].view(shape).requires_grad_()
            leaf.grad = gbase[start : start + n].view(shape)
            leaves.append((leaf, kind[0], kind[-1]))
        if leaves is not None:
            _BOUND[plan.conv_modules[0]] = leaves
            bound += 1
    return bound


def bound_stacked_weights(plan: CellPlan) -> list[Tensor] | None:
    """The bound leaves of this cell's kinds, or None (not bound, or the binding no longer
    holds). They require gradients exactly when the edges' weights do (``frozen``)."""
    hit = _BOUND.get(plan.conv_modules[0]) if plan.conv_modules else None
    if hit is None:
        return None
    for leaf, first, last in hit:
        end = leaf.data_ptr() + (leaf.numel() - last.numel()) * leaf.element_size()
        if first.data_ptr() != leaf.data_ptr() or last.data_ptr() != end:
            del _BOUND[plan.conv_modules[0]]
            return None
    wanted = hit[0][1].requires_grad
    return [leaf if wanted else leaf.detach() for leaf, _, _ in hit]
