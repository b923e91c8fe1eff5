"""Genotype (cell + network path), its JSON form, and decoding α and β into one.

Decoding follows docs/METHOD.md §4: per block, the top-2 inputs ranked by their
strongest non-`none` op, each with its argmax op excluding `none`; the path is the most
probable level sequence under the normalised β, found by Viterbi in log space.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import torch

from fastadl.space.cell_topology import edge_offset, num_edges
from fastadl.space.primitives import DERIVED_PRIMITIVES, PRIMITIVES
from fastadl.space.trellis import direction_between, incoming, levels_at


class GenotypeError(ValueError):
    """A genotype (or its JSON file) that does not describe a valid network."""


@dataclass(frozen=True)
class Genotype:
    """cell: 2·B (op, input) pairs, block by block; path: the level (0 = /4 … 3 = /32) of
    layers 1..L; F, B, L: filter multiplier, blocks per cell, layers."""

    cell: tuple[tuple[str, int], ...]
    path: tuple[int, ...]
    filter_multiplier: int = 8
    block_multiplier: int = 5
    layers: int = 12

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", tuple((str(op), int(i)) for op, i in self.cell))
        object.__setattr__(self, "path", tuple(int(s) for s in self.path))
        validate(self)

    def blocks(self) -> list[tuple[tuple[str, int], tuple[str, int]]]:
        """The cell as B pairs of (op, input) branches."""
        return [(self.cell[2 * b], self.cell[2 * b + 1]) for b in range(self.block_multiplier)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cell"] = [list(pair) for pair in self.cell]
        d["path"] = list(self.path)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict, source: str = "genotype") -> Genotype:
        if not isinstance(d, dict):
            raise GenotypeError(f"{source}: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in ("cell", "path") if k not in d]
        if missing:
            raise GenotypeError(f"{source}: missing field(s) {missing}")
        # predicted_cost: a budgeted search's report beside the genotype (fastadl/budget)
        known = {"cell", "path", "filter_multiplier", "block_multiplier", "layers"}
        unknown = set(d) - known - {"predicted_cost"}
        if unknown:
            raise GenotypeError(f"{source}: unknown field(s) {sorted(unknown)}")
        _check_json_types(d, source)
        cell = [(op, idx) for op, idx in d["cell"]]
        kwargs = {k: d[k] for k in ("filter_multiplier", "block_multiplier", "layers") if k in d}
        if "layers" not in kwargs and isinstance(d["path"], list):
            kwargs["layers"] = len(d["path"])
        if "block_multiplier" not in kwargs:
            kwargs["block_multiplier"] = len(cell) // 2
        try:
            return cls(cell=tuple(cell), path=tuple(d["path"]), **kwargs)
        except GenotypeError as e:
            raise GenotypeError(f"{source}: {e}") from None
        except (TypeError, ValueError) as e:
            raise GenotypeError(f"{source}: {e}") from e

    @classmethod
    def from_json(cls, text: str, source: str = "genotype") -> Genotype:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenotypeError(f"{source}: not valid JSON ({e})") from None
        return cls.from_dict(d, source)

    def save(self, path: str | os.PathLike) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(self.to_json() + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Genotype:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise GenotypeError(f"cannot read genotype file {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise GenotypeError(f"{path}: not a text (UTF-8 JSON) file") from None
        return cls.from_json(text, source=str(path))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_json_types(d: dict, source: str) -> None:
    """GenotypeError naming the field whose JSON value has the wrong type (before __post_init__
    coerces numbers: a JSON 0.5 must not quietly become level 0)."""
    for name in ("filter_multiplier", "block_multiplier", "layers"):
        if name in d and not _is_int(d[name]):
            raise GenotypeError(f"{source}: {name} must be an integer, got {d[name]!r}")
    if not isinstance(d["cell"], list):
        raise GenotypeError(f"{source}: 'cell' must be a list of [op, input] pairs")
    for k, pair in enumerate(d["cell"]):
        ok = isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
        if not (ok and _is_int(pair[1])):
            raise GenotypeError(
                f"{source}: cell[{k}] must be an [op name, input index] pair, got {pair!r}"
            )
    if not isinstance(d["path"], list) or not all(_is_int(v) for v in d["path"]):
        raise GenotypeError(f"{source}: 'path' must be a list of integer levels, got {d['path']!r}")


def validate(g: Genotype) -> None:
    """Raise GenotypeError naming the field if ``g`` is not a valid genotype."""
    B, L = g.block_multiplier, g.layers
    if B < 1 or L < 1 or g.filter_multiplier < 1:
        raise GenotypeError("block_multiplier, layers and filter_multiplier must be >= 1")
    if len(g.cell) != 2 * B:
        raise GenotypeError(f"cell has {len(g.cell)} (op, input) pairs, expected 2·B = {2 * B}")
    for k, (op, idx) in enumerate(g.cell):
        block = k // 2
        if op not in DERIVED_PRIMITIVES:
            raise GenotypeError(f"cell[{k}]: op {op!r} is not one of {DERIVED_PRIMITIVES}")
        if not 0 <= idx < 2 + block:
            raise GenotypeError(f"cell[{k}]: block {block} takes inputs 0..{block + 1}, got {idx}")
    if len(g.path) != L:
        raise GenotypeError(f"path has {len(g.path)} levels, expected layers = {L}")
    prev = 0  # the stem is at level 0
    for layer, level in enumerate(g.path, start=1):
        if level not in levels_at(layer) or abs(level - prev) > 1:
            raise GenotypeError(
                f"path[{layer - 1}] = {level}: layer {layer} cannot be reached from level {prev}"
            )
        prev = level


def decode_cell(
    alphas: torch.Tensor, primitives=PRIMITIVES, max_skips: int | None = None
) -> tuple[tuple[str, int], ...]:
    """alphas: (E, K) raw → 2·B (op, input) pairs (strongest input first in each block).

    max_skips: a collapse guard (P-DARTS' cap on skip_connect, off when None): while the cell
    holds more skip_connects than this, the weakest chosen one is struck out and the cell is
    decoded again, so that edge competes with its next-best op (and may lose its place in the
    block's top 2). The other ops' weights are left as they are.
    """
    E, K = alphas.shape
    if len(primitives) != K:
        raise ValueError(f"alphas has {K} columns but there are {len(primitives)} primitives")
    B = 0
    while num_edges(B) < E:
        B += 1
    if num_edges(B) != E:
        raise ValueError(f"{E} edges is not 2 + 3 + ... + (B + 1) for any B")
    keep = [k for k, p in enumerate(primitives) if p != "none"]
    probs = alphas.detach().float().softmax(-1)[:, keep]  # none still shapes the softmax
    names = [primitives[k] for k in keep]
    skip = names.index("skip_connect") if "skip_connect" in names else None
    while True:
        strength, best = probs.max(-1)
        cell: list[tuple[str, int]] = []
        chosen: list[int] = []  # α row of each branch
        for b in range(B):
            rows = range(edge_offset(b), edge_offset(b) + 2 + b)
            # stable sort: ties go to the lower input index
            ranked = sorted(rows, key=lambda r: -strength[r].item())[:2]
            cell += [(names[best[r]], r - edge_offset(b)) for r in ranked]
            chosen += ranked
        skips = [r for r, (op, _) in zip(chosen, cell, strict=True) if op == "skip_connect"]
        if max_skips is None or len(skips) <= max(max_skips, 0):
            return tuple(cell)
        weakest = min(skips, key=lambda r: probs[r, skip].item())
        probs[weakest, skip] = -1.0  # below every real weight: never the argmax again


def viterbi(normalized_betas: torch.Tensor) -> tuple[int, ...]:
    """normalized_betas: (L, 4, 3) transition probabilities → most probable path, L levels."""
    L = normalized_betas.shape[0]
    logp = normalized_betas.detach().double().log()  # log 0 = -inf marks forbidden moves
    score = {0: 0.0}
    back: list[dict[int, int]] = []
    for layer in range(1, L + 1):
        new, arg = {}, {}
        for t in levels_at(layer):
            cands = [(score[s] + logp[layer - 1, s, d].item(), s) for s, d in incoming(layer, t)]
            new[t], arg[t] = max(cands, key=lambda c: (c[0], -c[1]))
        score = new
        back.append(arg)
    level = max(score, key=lambda t: (score[t], -t))
    if math.isinf(score[level]):
        raise ValueError("no path has non-zero probability under these betas")
    path = [level]
    for arg in reversed(back[1:]):
        level = arg[level]
        path.append(level)
    return tuple(reversed(path))


def path_log_prob(normalized_betas: torch.Tensor, path: tuple[int, ...]) -> float:
    """log P(path) = Σ_l log β̂[l-1, path[l-1], direction]; the stem is at level 0."""
    prev, total = 0, 0.0
    for layer, level in enumerate(path, start=1):
        p = normalized_betas[layer - 1, prev, direction_between(prev, level)].item()
        total += math.log(p) if p > 0 else -math.inf
        prev = level
    return total


# The paper's searched network (docs/METHOD.md §4), in this package's conventions.
PAPER_GENOTYPE = Genotype(
    cell=(
        ("dil_conv_5x5", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("dil_conv_3x3", 1),
        ("sep_conv_3x3", 3),
        ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 4),
        ("sep_conv_5x5", 2),
        ("sep_conv_5x5", 3),
        ("dil_conv_5x5", 5),
    ),
    path=(0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1),
    filter_multiplier=8,
    block_multiplier=5,
    layers=12,
)
