"""The supernet's expected cost: ``genotype_cost`` averaged over a distribution of derived
networks that is smooth in α and β, so that a search can pay for it (docs/BUDGET.md).

The distribution (path and cell independent):

- path: the Markov chain of normalised β (Eq. 7) from the stem at level 0; layer l's level
  follows layer l-1's with probability β̂[l-1, s, d]. Cell i's ``link`` reads the joint law of
  (c_{i-2}, c_{i-1}, c_i) (the stem's two outputs stand in for c_{-1}, c_0), the ``head`` the
  joint law of (c_3, c_L); both come from a forward recursion, exactly.
- cell: per block b, two distinct inputs {i, j} with probability ∝ s_i · s_j, where an edge's
  strength s_r = 1 − softmax(α_r)[none] (the weight of its real ops); each kept edge's op is drawn
  from softmax(α_r) without ``none``, renormalised. Like decoding, a block keeps two distinct
  inputs and never a ``none``; unlike decoding (argmax), every cell has some probability.

Since a cell's ops are summed in ``genotype_cost``, E[cell ops | level c, stride] is linear:
P(edge r kept) · q_r(op) = softmax(α_r)[op] · (S_b − s_r) / Z_b with S_b = Σ s and
Z_b = Σ_{i<j} s_i s_j over the block's edges.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch

from fastadl.budget.table import STEM_HALF, STEM_QUARTER, CostTable
from fastadl.space.cell_topology import edge_offset, num_edges
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import NUM_LEVELS, at_least_float32, levels_at, normalize_betas

__all__ = ["DenseCost", "dense_cost", "edge_weights", "expected_cost", "level_transitions"]


def level_transitions(normalized_betas: torch.Tensor) -> torch.Tensor:
    """(L, 4, 3) normalised β → (L, 4, 4) T with T[l-1, s, t] = P(level t at layer l | level s
    at layer l-1); rows of levels that do not exist at layer l-1 are zero."""
    L = normalized_betas.shape[0]
    T = normalized_betas.new_zeros(L, NUM_LEVELS, NUM_LEVELS)
    for s in range(NUM_LEVELS):
        for d in range(3):
            t = s + d - 1
            if 0 <= t < NUM_LEVELS:
                T[:, s, t] = normalized_betas[:, s, d]
    return T


def edge_weights(alphas: torch.Tensor, primitives: Sequence[str] = PRIMITIVES) -> torch.Tensor:
    """alphas (E, K) raw → (E, K') with K' the ops other than ``none``: P(edge r is one of its
    block's two inputs and takes that op) under the cell distribution of the module docstring.
    Each block's rows sum to 2 (two branches)."""
    E, K = alphas.shape
    if len(primitives) != K:
        raise ValueError(f"alphas has {K} columns but there are {len(primitives)} primitives")
    probs = alphas.to(at_least_float32(alphas)).softmax(-1)
    keep = [k for k, p in enumerate(primitives) if p != "none"]
    real = probs[:, keep]  # (E, K')
    strength = real.sum(-1)  # (E,) = 1 - P(none)
    blocks = 0
    while num_edges(blocks) < E:
        blocks += 1
    if num_edges(blocks) != E:
        raise ValueError(f"{E} edges is not 2 + 3 + ... + (B + 1) for any B")
    scale = []
    for b in range(blocks):
        s = strength[edge_offset(b) : edge_offset(b) + 2 + b]
        total = s.sum()
        pairs = (total * total - (s * s).sum()) / 2  # Σ_{i<j} s_i s_j
        scale.append((total - s) / pairs)  # P(r kept) / s_r
    return real * torch.cat(scale)[:, None]


@functools.cache
def _reads_inputs(edges: int, device: torch.device) -> torch.Tensor:
    """(E,) bool: the edges whose source is one of the cell's two inputs (0 or 1); made once
    per device (a host-to-device copy at every step would wait for the device). Read-only."""
    blocks = 0
    while num_edges(blocks) < edges:
        blocks += 1
    sources = [
        r - edge_offset(b) for b in range(blocks) for r in range(edge_offset(b), edge_offset(b + 1))
    ]
    return torch.tensor([s < 2 for s in sources], device=device)


def _need(mapping: Mapping, key, unit: str):
    try:
        return mapping[key]
    except KeyError:
        raise KeyError(f"the {unit} cost table has no entry for {key!r}") from None


class DenseCost(NamedTuple):
    """A CostTable's pieces for one trellis as float64 tensors (zero where no path uses them):
    link1 (4,) for cell 1 (stem/2, stem/4, c), link2 (4, 4) for cell 2 (stem/4, b, c), link
    (4, 4, 4) for cells 3.. (a, b, c), op (4, 2, K') [level, stride 1/2, op other than none],
    head (4, 4) [low, last]. ``dense_cost`` makes it once; ``expected_cost`` takes either."""

    unit: str
    fixed: float
    layers: int
    names: tuple[str, ...]
    link1: torch.Tensor
    link2: torch.Tensor
    link: torch.Tensor
    op: torch.Tensor
    head: torch.Tensor

    def to(self, device) -> DenseCost:
        """The same costs on ``device``."""
        moved = (t.to(device) for t in (self.link1, self.link2, self.link, self.op, self.head))
        return DenseCost(self.unit, self.fixed, self.layers, self.names, *moved)


def dense_cost(table: CostTable, layers: int, primitives: Sequence[str] = PRIMITIVES) -> DenseCost:
    """``table`` as tensors for an L-layer trellis; KeyError naming a piece the table lacks."""
    if layers < 3:
        raise ValueError(f"the derived network needs at least 3 layers, got {layers}")
    names = tuple(p for p in primitives if p != "none")
    u = table.unit
    link = torch.zeros(NUM_LEVELS, NUM_LEVELS, NUM_LEVELS, dtype=torch.float64)
    link1 = torch.zeros(NUM_LEVELS, dtype=torch.float64)
    link2 = torch.zeros(NUM_LEVELS, NUM_LEVELS, dtype=torch.float64)
    for c in levels_at(1):
        link1[c] = _need(table.link, (STEM_HALF, STEM_QUARTER, c), u)
    for b in levels_at(1):
        for c in range(b - 1, b + 2):
            if c in levels_at(2):
                link2[b, c] = _need(table.link, (STEM_QUARTER, b, c), u)
    for layer in range(3, layers + 1):  # every move a → b → c the trellis allows
        for a in levels_at(layer - 2):
            for b in range(a - 1, a + 2):
                for c in range(b - 1, b + 2):
                    if b in levels_at(layer - 1) and c in levels_at(layer):
                        link[a, b, c] = _need(table.link, (a, b, c), u)
    op, head = _op_head(table, layers, names)
    return DenseCost(u, float(table.fixed), layers, names, link1, link2, link, op, head)


def _op_head(table: CostTable, layers: int, names: Sequence[str]):
    u = table.unit
    op = torch.zeros(NUM_LEVELS, 2, len(names), dtype=torch.float64)
    head = torch.zeros(NUM_LEVELS, NUM_LEVELS, dtype=torch.float64)
    for c in levels_at(layers):
        for k, name in enumerate(names):
            op[c, 0, k] = _need(table.op, (c, 1, name), u)
            if c > 0:  # a path goes down into levels 1.. only
                op[c, 1, k] = _need(table.op, (c, 2, name), u)
    for low in levels_at(3):
        for last in levels_at(layers):
            if abs(last - low) <= layers - 3:
                head[low, last] = _need(table.head, (low, last), u)
    return op, head


def expected_cost(
    table: CostTable | DenseCost,
    alphas: torch.Tensor,
    betas: torch.Tensor,
    primitives: Sequence[str] = PRIMITIVES,
) -> torch.Tensor:
    """E[genotype_cost(table, g)] over the distribution of the module docstring, a 0-d tensor
    in ``table.unit``, differentiable in alphas (E, K) and betas (L, 4, 3) raw. Needs L >= 3
    (the decoder reads the third cell). Raises KeyError naming a piece the table lacks. A
    search calls it every step with ``dense_cost(table, ...)`` made once."""
    L = betas.shape[0]
    if not isinstance(table, DenseCost):
        table = dense_cost(table, L, primitives)
    if table.layers != L or table.names != tuple(p for p in primitives if p != "none"):
        raise ValueError(
            f"the dense cost is for {table.layers} layers and ops {table.names}, not {L} layers "
            f"and {tuple(primitives)}"
        )
    T = level_transitions(normalize_betas(betas))
    W = edge_weights(alphas, primitives)
    T = T.to(torch.promote_types(T.dtype, W.dtype))
    W = W.to(T.dtype)
    link1, link2, link, op, head = (
        t.to(dtype=T.dtype, device=T.device)
        for t in (table.link1, table.link2, table.link, table.op, table.head)
    )

    # E[a cell's ops | its level c, whether the path goes down into it] (4, 2)
    w_all = W.sum(0)  # (K',)
    # the branches that read H^{l-2}, H^{l-1} (a multiply, not a boolean index: that would read
    # the mask's count on the host, a synchronisation on CUDA)
    w_in = (W * _reads_inputs(W.shape[0], W.device)[:, None]).sum(0)
    plain = op[:, 0] @ w_all  # (4,) every branch at stride 1
    down = op[:, 1] @ w_in + op[:, 0] @ (w_all - w_in)  # (4,) inputs 0/1 at stride 2
    levels = torch.arange(NUM_LEVELS, device=T.device)
    # cell_cost[b, c] for a cell at level c whose H^{l-1} is at level b: down when c == b + 1
    cell_cost = torch.where(levels[None, :] == levels[:, None] + 1, down[None, :], plain[None, :])

    p1 = T[0, 0]  # (4,) level of cell 1 (the stem's /4 output is at level 0)
    total = p1 @ (link1 + cell_cost[0]) + table.fixed
    pair = p1[:, None] * T[1]  # (4, 4) joint of (c_1, c_2)
    total = total + (pair * (link2 + cell_cost)).sum()
    marginal = p1
    for i in range(2, L):  # cell i + 1 reads (c_{i-1}, c_i, c_{i+1})
        triple = marginal[:, None, None] * T[i - 1][:, :, None] * T[i][None, :, :]
        total = total + (triple * (link + cell_cost[None])).sum()
        marginal = marginal @ T[i - 1]
    # head: joint of (c_3, c_L)
    p3 = p1 @ T[1] @ T[2]
    joint = torch.diag(p3)
    for i in range(3, L):
        joint = joint @ T[i]
    return total + (joint * head).sum()
