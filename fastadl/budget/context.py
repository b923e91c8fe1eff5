"""Pieces timed inside whole networks: the factors that turn a table of pieces timed alone
into the pieces' cost in context (docs/BUDGET.md).

A piece timed alone, called again and again on the same tensors, finds its weights and
buffers in the core's caches; inside a network each op writes buffers the other ops have just
used for something else, so it runs slower, and by how much depends on the kind of piece
(sep_conv's eight small kernels lose more than one dense conv). The stem and the head, timed
alone, come out slower than in the network instead. So a few random networks are run with
timing hooks that split each forward into fixed (input affine and stem), per cell the link
(the trunk's upsampling, the cell's preprocessing, block sums and concatenation) and each
op, and the head; the factor of a kind is its time in context over the table's sum for the
same pieces. Kinds: "fixed", "link", "head" and each primitive.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import torch

from fastadl.budget.pieces import build_network, full_config
from fastadl.budget.table import CostTable, cell_positions, going_down
from fastadl.budget.timing import (
    CLOCKS,
    WARMUP,
    intra_op_threads,
    random_inputs,
    settled_heap,
    sync_of,
)
from fastadl.space.genotype import Genotype
from fastadl.space.random_genotype import random_genotype

CALIBRATION_NETWORKS, CALIBRATION_SEED = 3, 25025


def calibration_genotypes(
    model_kwargs: Mapping[str, object], count: int = CALIBRATION_NETWORKS
) -> list[Genotype]:
    """``count`` random genotypes of the configuration; the seed keeps them apart from the
    ones a user or the accuracy check draws."""
    cfg = full_config(model_kwargs)
    rng = random.Random(CALIBRATION_SEED)
    B, L, F = cfg["blocks"], cfg["layers"], cfg["filter_multiplier"]
    return [random_genotype(rng, B, L, F) for _ in range(count)]


class Spans:
    """Timestamps (ms) of a network's forward, taken by hooks: stem end, each cell's start
    and end, each op's duration."""

    def __init__(self, net: torch.nn.Module, now: Callable[[], float]) -> None:
        self.now, self.marks, self.ops = now, {}, defaultdict(float)
        self.handles = [net.stem.register_forward_hook(self.mark("stem"))]
        for i, cell in enumerate(net.cells):
            self.handles.append(cell.register_forward_pre_hook(self.mark(("in", i), pre=True)))
            self.handles.append(cell.register_forward_hook(self.mark(("out", i))))
            for k, op in enumerate(cell.ops):
                self.handles.append(op.register_forward_pre_hook(self.mark((i, k), pre=True)))
                self.handles.append(op.register_forward_hook(self.mark((i, k, "end"))))

    def mark(self, key, pre: bool = False):
        def hook(*_):
            self.marks[key] = self.now() * 1e3
            if isinstance(key, tuple) and len(key) == 3:
                self.ops[key[:2]] = self.marks[key] - self.marks[key[:2]]

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def split_forward(
    net: torch.nn.Module, x: torch.Tensor, now: Callable[[], float], cells: int, ops: int
) -> dict:
    """One forward of ``net`` on x split into fixed, link[i], op[i][k], head times (ms)."""
    spans = Spans(net, now)
    try:
        start = now() * 1e3
        net(x)
        end = now() * 1e3
    finally:
        spans.remove()
    m, op = spans.marks, spans.ops
    prev = [m["stem"]] + [m[("out", i)] for i in range(cells - 1)]
    return {
        "fixed": m["stem"] - start,
        "link": [
            m[("in", i)]
            - prev[i]
            + m[("out", i)]
            - m[("in", i)]
            - sum(op[(i, k)] for k in range(ops))
            for i in range(cells)
        ],
        "op": [[op[(i, k)] for k in range(ops)] for i in range(cells)],
        "head": end - m[("out", cells - 1)],
    }


def in_context(
    table: CostTable,
    genotypes: Sequence[Genotype],
    model_kwargs: Mapping[str, object],
    size: Sequence[int],
    device: torch.device,
    dtype: torch.dtype,
    threads: int,
    repeats: int,
    clock: str,
) -> tuple[dict[str, float], dict[str, float]]:
    """(median time in context, table's time) per kind, summed over ``genotypes``' networks,
    timed as the pieces are (eval, inference_mode, warm-up, ``threads``, ``clock``; on CUDA
    every hook synchronises, which slows the network but keeps the split honest)."""
    sync, clock_fn = sync_of(device), CLOCKS[clock]

    def now() -> float:
        sync()
        return clock_fn()

    cfg = full_config(model_kwargs)
    ctx, alone = defaultdict(float), defaultdict(float)
    for genotype in genotypes:
        net = build_network(cfg, genotype).to(device=device, dtype=dtype).eval()
        (x,) = random_inputs([(1, cfg["in_channels"], *size)], device, dtype)
        cells, ops = len(genotype.path), len(genotype.cell)
        with settled_heap(), intra_op_threads(threads), torch.inference_mode():
            for _ in range(WARMUP):
                net(x)
            splits = [split_forward(net, x, now, cells, ops) for _ in range(max(3, repeats))]

        def med(f, splits=splits):
            return statistics.median(f(s) for s in splits)

        ctx["fixed"] += med(lambda s: s["fixed"])
        ctx["head"] += med(lambda s: s["head"])
        alone["fixed"] += table.fixed
        alone["head"] += table.head[(genotype.path[2], genotype.path[-1])]
        for i, (a, b, c) in enumerate(cell_positions(genotype.path)):
            ctx["link"] += med(lambda s, i=i: s["link"][i])
            alone["link"] += table.link[(a, b, c)]
            for k, (op, source) in enumerate(genotype.cell):
                ctx[op] += med(lambda s, i=i, k=k: s["op"][i][k])
                alone[op] += table.op[(c, 2 if going_down(b, c) and source < 2 else 1, op)]
    return dict(ctx), dict(alone)


def in_context_factors(table: CostTable, *args, **kwargs) -> dict[str, float]:
    """Per kind, time in context / table's time (in_context's arguments after the table)."""
    ctx, alone = in_context(table, *args, **kwargs)
    return {kind: ctx[kind] / alone[kind] for kind in ctx if alone[kind] > 0}


def apply_factors(
    table: CostTable, factors: Mapping[str, float], overall: float = 1.0
) -> CostTable:
    """``table`` with each piece scaled by its kind's factor (1 for a kind never seen) and by
    ``overall``."""
    f = lambda kind: factors.get(kind, 1.0) * overall  # noqa: E731
    return CostTable(
        unit=table.unit,
        fixed=table.fixed * f("fixed"),
        link={key: v * f("link") for key, v in table.link.items()},
        op={key: v * f(key[2]) for key, v in table.op.items()},
        head={key: v * f("head") for key, v in table.head.items()},
        context={**table.context, "context_factors": dict(factors), "overall": overall},
    )
