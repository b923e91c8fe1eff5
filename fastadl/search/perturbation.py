"""Operation and input selection by perturbation (Wang et al., "Rethinking Architecture
Selection in Differentiable NAS", ICLR 2021), an alternative to decoding α's magnitudes.

α's largest weight need not be the op the supernet relies on most: parameter-free ops win α
early in a weight-sharing supernet (the skip_connect collapse). Perturbation asks the supernet
instead. Edges are visited in a seeded random order; on each, every candidate op is removed in
turn and the supernet scored; the op whose removal hurts most is kept, the edge is fixed to it
(α one-hot) and the supernet fine-tuned briefly before the next edge. Then, per block, each
input edge is removed in turn and the two whose removal hurts most are kept.

"Removing" op o moves its softmax weight onto ``none`` (which outputs zeros): the other ops keep
their weights exactly, as in the paper's masking, without a renormalisation that removal through
α alone would cause. Scores come from ``evaluate`` (the search scores on images of its
architecture split trainB, never on the validation set its retrained genotypes are judged on).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from fastadl.space.cell_topology import edge_offset, num_edges

# A logit this far below 0 has softmax weight exactly 0 in float32 (exp(-1e4) underflows).
OFF = -1e4


def _set_row(alphas: torch.Tensor, row: int, weights: torch.Tensor) -> None:
    """α[row] ← logits whose softmax is ``weights`` (zeros become OFF)."""
    alphas[row] = torch.where(
        weights > 0, weights.clamp_min(1e-30).log(), torch.full_like(weights, OFF)
    )


def without_op(alphas: torch.Tensor, row: int, op: int, none: int) -> torch.Tensor:
    """A copy of α with op ``op`` of edge ``row`` removed: its weight moved onto ``none``."""
    out = alphas.clone()
    weights = alphas[row].float().softmax(-1)
    weights[none] += weights[op]
    weights[op] = 0
    _set_row(out, row, weights.to(alphas.dtype))
    return out


def select_ops(
    alphas: torch.nn.Parameter,
    primitives: Sequence[str],
    evaluate: Callable[[], float],
    finetune: Callable[[], None],
    seed: int = 0,
) -> list[int]:
    """The op index kept on every edge (α rows), fixing each edge to it in ``alphas`` as it goes.

    evaluate() scores the supernet as ``alphas`` stands (higher is better); finetune() trains
    its weights briefly with the edges fixed so far.
    """
    none = list(primitives).index("none")
    candidates = [k for k in range(len(primitives)) if k != none]
    order = list(range(alphas.shape[0]))
    random.Random(seed).shuffle(order)
    chosen = [0] * alphas.shape[0]
    for row in order:
        with torch.no_grad():
            base = evaluate()
            saved = alphas.detach().clone()
            drops = {}
            for op in candidates:
                alphas.copy_(without_op(saved, row, op, none))
                drops[op] = base - evaluate()
            best = max(candidates, key=lambda k: (drops[k], -k))  # ties: the lower op index
            alphas.copy_(saved)
            one_hot = torch.zeros(len(primitives), dtype=alphas.dtype)
            one_hot[best] = 1
            _set_row(alphas.data, row, one_hot)
        chosen[row] = best
        finetune()
    return chosen


def select_inputs(
    alphas: torch.nn.Parameter,
    primitives: Sequence[str],
    chosen: Sequence[int],
    evaluate: Callable[[], float],
) -> tuple[tuple[str, int], ...]:
    """2·B (op, input) pairs: per block, the two input edges whose removal (all weight onto
    ``none``) hurts ``evaluate`` most, each with its op from ``chosen``. ``alphas`` is left with
    the decided cell (every other edge on ``none``)."""
    none = list(primitives).index("none")
    rows = alphas.shape[0]
    blocks = next(b for b in range(rows + 1) if num_edges(b) == rows)
    cell: list[tuple[str, int]] = []
    with torch.no_grad():
        for b in range(blocks):
            base = evaluate()
            saved = alphas.detach().clone()
            drops = {}
            for source in range(2 + b):
                row = edge_offset(b) + source
                alphas.copy_(without_op(saved, row, chosen[row], none))
                drops[source] = base - evaluate()
            alphas.copy_(saved)
            kept = sorted(drops, key=lambda s: (-drops[s], s))[:2]  # the stronger input first
            for source in range(2 + b):
                if source not in kept:
                    off = torch.zeros(len(primitives), dtype=alphas.dtype)
                    off[none] = 1
                    _set_row(alphas.data, edge_offset(b) + source, off)
            cell += [(primitives[chosen[edge_offset(b) + s]], s) for s in kept]
    return tuple(cell)
