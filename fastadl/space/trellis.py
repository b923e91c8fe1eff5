"""The network-level search space: which nodes exist, how paths move, and β's normalisation.

Conventions (docs/METHOD.md §2): layer 0 is the stem (level 0 = downsample 4 only),
layers 1..L hold levels 0..min(l, 3) (downsample 4·2^level). β has shape (L, 4, 3):
β[l-1, s', d] weighs the edge from level s' of layer l-1 to level s'+d-1 of layer l, with
d = FINER (0), SAME (1), COARSER (2).
"""

from __future__ import annotations

import functools

import torch

NUM_LEVELS = 4
FINER, SAME, COARSER = 0, 1, 2
DIRECTIONS = (FINER, SAME, COARSER)


def levels_at(layer: int) -> range:
    """Levels that exist at ``layer`` (0 = the stem's /4 output)."""
    if layer < 0:
        raise ValueError(f"layer must be >= 0, got {layer}")
    return range(min(layer, NUM_LEVELS - 1) + 1)


def target_level(source: int, direction: int) -> int:
    """Level reached from ``source`` going ``direction`` (FINER lowers the level by one)."""
    return source + direction - 1


def direction_between(source: int, target: int) -> int:
    """Direction index for the move source → target (|target - source| <= 1)."""
    if abs(target - source) > 1:
        raise ValueError(f"no single move from level {source} to level {target}")
    return target - source + 1


def incoming(layer: int, level: int) -> list[tuple[int, int]]:
    """(source level at layer-1, direction) for every path into node (layer, level), layer >= 1."""
    if level not in levels_at(layer):
        raise ValueError(f"layer {layer} has no level {level}")
    sources = levels_at(layer - 1)
    return [(s, direction_between(s, level)) for s in (level + 1, level, level - 1) if s in sources]


def transition_mask(layers: int) -> torch.Tensor:
    """(L, 4, 3) bool: True where β[l-1, s', d] is a real edge (source exists, target in range)."""
    mask = torch.zeros(layers, NUM_LEVELS, 3, dtype=torch.bool)
    for i in range(layers):
        for s in levels_at(i):
            for d in DIRECTIONS:
                if 0 <= target_level(s, d) < NUM_LEVELS:
                    mask[i, s, d] = True
    return mask


def at_least_float32(t: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 parameters (α and β's softmaxes stay float32 under
    autocast), float64 for a float64 network."""
    return torch.promote_types(t.dtype, torch.float32)


@functools.cache
def _device_mask(layers: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(transition_mask(layers), its rows' any()) on ``device``, made once: a host-to-device
    copy at every forward would make each forward on CUDA wait for the host (and cannot be
    part of a CUDA graph). Read-only: every caller shares them."""
    mask = transition_mask(layers).to(device)
    return mask, mask.any(-1, keepdim=True)


def normalize_betas(betas: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 7: softmax over each source node's *outgoing* edges.

    betas: (L, 4, 3) raw → (L, 4, 3); allowed entries of each existing source sum to 1,
    disallowed entries (and rows of sources that do not exist at that layer) are exactly 0.
    No rescaling of edge nodes (docs/METHOD.md §2 lists that as a bug to avoid).
    """
    if betas.dim() != 3 or betas.shape[1:] != (NUM_LEVELS, 3):
        raise ValueError(f"betas must have shape (L, 4, 3), got {tuple(betas.shape)}")
    if type(betas) is torch.Tensor:  # a real tensor: the mask made once per device
        mask, row_exists = _device_mask(betas.shape[0], betas.device)
    else:  # FakeTensor, tracing wrappers: no tensor of theirs may outlive their mode
        mask = transition_mask(betas.shape[0]).to(betas.device)
        row_exists = mask.any(-1, keepdim=True)
    logits = betas.to(at_least_float32(betas)).masked_fill(~mask, float("-inf"))
    logits = torch.where(row_exists, logits, torch.zeros_like(logits))  # no all -inf rows
    return torch.where(mask, logits.softmax(-1), torch.zeros_like(logits))


@functools.cache
def paths_into(layers: int) -> tuple[dict[int, int], ...]:
    """Entry l (0..L): level → number of distinct paths from the stem ending at node (l, level).

    Entry 0 is the stem ({0: 1}); a path drawn backwards from these counts is uniform over all
    paths (fastadl/space/random_genotype.py).
    """
    counts = [{0: 1}]
    for layer in range(1, layers + 1):
        prev = counts[-1]
        counts.append(
            {t: sum(prev.get(s, 0) for s, _ in incoming(layer, t)) for t in levels_at(layer)}
        )
    return tuple(counts)


def count_paths(layers: int) -> int:
    """Number of distinct level sequences from the stem through ``layers`` layers."""
    return sum(paths_into(layers)[-1].values())


def num_nodes(layers: int) -> int:
    """Trellis nodes in layers 1..L (45 for L = 12)."""
    return sum(len(levels_at(layer)) for layer in range(1, layers + 1))


def num_cell_evaluations(layers: int) -> int:
    """Cell evaluations per forward: one per incoming path of every node (105 for L = 12)."""
    return sum(
        len(incoming(layer, level)) for layer in range(1, layers + 1) for level in levels_at(layer)
    )
