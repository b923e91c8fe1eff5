"""How far the architecture has moved: summaries of α, β and of a decoded cell.

Used for the search's epoch records in metrics.jsonl (α over time per edge, β entropy), the
collapse guards (share of skip_connect in the decoded cell) and the study's op histograms.
Entropies are normalised by their uniform value, so 1.0 = uniform and 0.0 = one-hot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fastadl.space.cell_topology import edge_index
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import transition_mask

# Op groups of a decoded cell (what DARTS-style collapse is made of: parameter-free ops).
OP_GROUPS = {
    "skip": ("skip_connect",),
    "pool": ("max_pool_3x3", "avg_pool_3x3"),
    "sep_conv": ("sep_conv_3x3", "sep_conv_5x5"),
    "dil_conv": ("dil_conv_3x3", "dil_conv_5x5"),
}


def _normalised_entropy(probs: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Entropy of each row of ``probs`` over its ``allowed`` entries / log(#allowed) (β rows
    have 2 or 3 allowed targets)."""
    p = torch.where(allowed, probs, torch.zeros_like(probs))
    ent = -(p * p.clamp_min(1e-30).log()).sum(-1)
    n = allowed.sum(-1).double()
    return (ent.double() / n.clamp_min(2).log()).float()


def alpha_entropy(alphas: torch.Tensor) -> torch.Tensor:
    """Mean over edges of the normalised entropy of softmax(α): a differentiable 0-d tensor
    (alphas: (E, K) raw logits; uniform = 1, one-hot = 0)."""
    logp = alphas.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1).mean() / math.log(alphas.shape[-1])


def alpha_decay(alphas: torch.Tensor) -> torch.Tensor:
    """β-DARTS' beta-decay term: mean over edges of logsumexp of the edge's α (E, K) logits, a
    differentiable 0-d tensor. Its gradient is softmax(α) per edge, so minimising it pulls
    the leading logits down hardest: α's spread stays small and the ops' weights comparable,
    which β-DARTS finds keeps parameter-free ops from running away."""
    return alphas.float().logsumexp(-1).mean()


def alpha_summary(alphas: torch.Tensor) -> dict:
    """alphas: (E, K) raw logits → per-edge softmax, its largest weight and its entropy.

    Keys: ``alpha_softmax`` (E lists of K), ``alpha_max`` (E), ``alpha_max_mean``,
    ``alpha_entropy`` (mean normalised entropy over edges; uniform = 1).
    """
    a = alphas.detach().float().cpu()
    probs = a.softmax(-1)
    top = probs.max(-1).values
    return {
        "alpha_softmax": [[round(float(v), 5) for v in row] for row in probs],
        "alpha_max": [round(float(v), 5) for v in top],
        "alpha_max_mean": float(top.mean()),
        "alpha_entropy": float(alpha_entropy(a)),
    }


def beta_summary(normalized_betas: torch.Tensor) -> dict:
    """normalized_betas: (L, 4, 3) → ``beta_normalized`` (as lists), ``beta_entropy`` (mean
    normalised entropy over the source nodes with two or three targets; uniform = 1) and
    ``beta_max_mean`` (mean largest outgoing weight over those nodes)."""
    nb = normalized_betas.detach().float().cpu()
    mask = transition_mask(nb.shape[0])
    choice = mask.sum(-1) >= 2  # nodes with a real choice (every existing node has 2 or 3)
    ent = _normalised_entropy(nb, mask)[choice]
    top = nb.max(-1).values[choice]
    return {
        "beta_normalized": [[[round(float(v), 5) for v in row] for row in lay] for lay in nb],
        "beta_entropy": float(ent.mean()) if ent.numel() else math.nan,
        "beta_max_mean": float(top.mean()) if top.numel() else math.nan,
    }


def op_histogram(
    cell: Sequence[tuple[str, int]],
    alphas: torch.Tensor | None = None,
    primitives: Sequence[str] = PRIMITIVES,
) -> dict[str, float]:
    """Share of each op group (OP_GROUPS) among a decoded cell's 2·B ops.

    With the cell's α (E, K raw logits) also ``none_dominated``: the share of kept branches
    whose edge had ``none`` as its strongest op (decoding excludes none, so those are choices
    the search itself rated below "no edge").
    """
    ops = [op for op, _ in cell]
    shares = {g: sum(op in names for op in ops) / len(ops) for g, names in OP_GROUPS.items()}
    if alphas is not None and "none" in primitives:
        argmax = alphas.detach().argmax(-1)
        none = list(primitives).index("none")
        rows = [edge_index(k // 2, src) for k, (_, src) in enumerate(cell)]
        shares["none_dominated"] = sum(int(argmax[r]) == none for r in rows) / len(rows)
    return shares


def skip_count(cell: Sequence[tuple[str, int]]) -> int:
    """Number of skip_connect branches in a decoded cell."""
    return sum(op == "skip_connect" for op, _ in cell)
