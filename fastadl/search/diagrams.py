"""Diagrams of a decoded genotype, as PNG and SVG: the cell as a graph and the network path over
the trellis (Auto-DeepLab's Fig. 3, drawn by matplotlib alone: no Graphviz needed).

- ``genotype_cell``: the inputs H^{l-2} and H^{l-1}, the B blocks, every kept edge as an arrow
  labelled with its op, and the concatenation of the blocks' outputs into H^l.
- ``genotype_path``: the trellis (layers × downsample rates /4 … /32, every allowed move faint)
  with the decoded path drawn over it, each of its nodes marked with its rate.

The SVGs keep their text as text (``svg.fonttype`` "none"), so the ops can be searched for in
them. Written into a search's ``RUN/plots/`` every epoch, and by ``python -m fastadl.show``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastadl.runtime.rundir.plots import figure
from fastadl.search.plots import trellis_axes
from fastadl.space.genotype import Genotype
from fastadl.space.trellis import levels_at

CELL_NAME, PATH_NAME = "genotype_cell", "genotype_path"
INPUT_NAMES = ("H^{l-2}", "H^{l-1}")
GAP = 1.7  # horizontal distance between the cell's columns


def node_name(source: int) -> str:
    """A cell node's name: input 0 / 1 = H^{l-2} / H^{l-1}, 2 + j = block j + 1 (1-based)."""
    return INPUT_NAMES[source] if source < 2 else f"block {source - 1}"


def save_both(fig, out_stem: str | os.PathLike) -> list[Path]:
    """``fig`` as ``out_stem``.png and .svg (the SVG's text kept as text)."""
    from matplotlib import rc_context

    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "fastadl"}):
        fig.savefig(paths[0], format="png")
        fig.savefig(paths[1], format="svg", metadata={"Date": None})  # the same bytes each time
    return paths


def _node(ax, xy: tuple[float, float], text: str, colour: str) -> None:
    ax.text(*xy, text, ha="center", va="center", fontsize=9, zorder=3,
            bbox={"boxstyle": "round,pad=0.35", "facecolor": colour, "edgecolor": "0.3"})  # fmt: skip


def cell_positions(blocks: int) -> dict[int, tuple[float, float]]:
    """Node index (0, 1 inputs; 2 + j block j) → (x, y); the output is at x = (B + 1)·GAP."""
    pos = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for b in range(blocks):
        pos[2 + b] = ((b + 1) * GAP, 0.7 if b % 2 == 0 else -0.7)
    return pos


def draw_cell(genotype: Genotype, out_stem: str | os.PathLike) -> list[tuple[str, str, str]]:
    """Draw the cell of ``genotype`` into ``out_stem``.png/.svg; returns the labelled edges
    drawn, as (source, block, op) in the cell's order (e.g. ("H^{l-1}", "block 1",
    "sep_conv_3x3"))."""
    from matplotlib.patches import FancyArrowPatch

    blocks = genotype.block_multiplier
    pos = cell_positions(blocks)
    out_xy = ((blocks + 1) * GAP, 0.0)
    fig = figure(2.2 + 1.9 * (blocks + 1), 4.2)
    ax = fig.add_subplot()
    drawn = []
    for k, (op, source) in enumerate(genotype.cell):
        block = k // 2
        (x0, y0), (x1, y1) = pos[source], pos[2 + block]
        span = round(abs(x1 - x0) / GAP)
        # two branches of a block bend opposite ways; long edges bend more (around the blocks)
        rad = (0.12 + 0.08 * max(span - 1, 0)) * (1 if k % 2 == 0 else -1)
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), connectionstyle=f"arc3,rad={rad}",
                                     arrowstyle="-|>", mutation_scale=12, shrinkA=16, shrinkB=16,
                                     color=f"C{k % 10}", linewidth=1.4, zorder=1))  # fmt: skip
        # the quadratic Bézier's midpoint (arc3's control point, equal aspect)
        lx, ly = (x0 + x1) / 2 + rad * (y1 - y0) / 2, (y0 + y1) / 2 - rad * (x1 - x0) / 2
        ax.text(lx, ly, op, ha="center", va="center", fontsize=7.5, color=f"C{k % 10}", zorder=2,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                      "alpha": 0.85})  # fmt: skip
        drawn.append((node_name(source), node_name(2 + block), op))
    for b in range(blocks):
        ax.add_patch(FancyArrowPatch(pos[2 + b], out_xy, arrowstyle="-|>", mutation_scale=10,
                                     shrinkA=16, shrinkB=22, color="0.6", linewidth=0.9,
                                     linestyle="--", zorder=1))  # fmt: skip
    for i, name in enumerate(INPUT_NAMES):
        _node(ax, pos[i], f"${name}$", "#cfe3f7")
    for b in range(blocks):
        _node(ax, pos[2 + b], node_name(2 + b), "#fde8c8")
    _node(ax, out_xy, "concat\n→ $H^{l}$", "#d5efd0")
    ax.set_xlim(-0.8, out_xy[0] + 0.8)
    ax.set_ylim(-1.8, 1.8)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"cell: B = {blocks} blocks, {len(genotype.cell)} edges (dashed: concatenated)")
    save_both(fig, out_stem)
    return drawn


def draw_path(genotype: Genotype, out_stem: str | os.PathLike) -> list[tuple[int, int]]:
    """Draw the network path of ``genotype`` over the trellis into ``out_stem``.png/.svg;
    returns the path's nodes as (layer, level), the stem (0, 0) first."""
    layers = genotype.layers
    fig = figure(max(5.0, 0.65 * layers + 2.2), 3.4)
    ax = fig.add_subplot()
    for layer in range(1, layers + 1):
        for level in levels_at(layer):
            for prev in (level - 1, level, level + 1):
                if prev in levels_at(layer - 1):
                    ax.plot([layer - 1, layer], [prev, level], color="0.85", linewidth=1, zorder=1)
    nodes = [(layer, s) for layer in range(layers + 1) for s in levels_at(layer)]
    ax.scatter(*zip(*nodes, strict=True), s=22, color="0.6", zorder=2)
    points = [(0, 0), *((i + 1, level) for i, level in enumerate(genotype.path))]
    xs, ys = zip(*points, strict=True)
    ax.plot(xs, ys, color="tab:red", linewidth=2.5, marker="o", zorder=3, gid="decoded-path")
    for x, y in points:
        ax.annotate(f"/{4 * 2**y}", (x, y), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=7, color="tab:red")  # fmt: skip
    trellis_axes(ax, layers, 0.6)  # room above the top row for the /4 labels
    ax.set_title(f"network path: levels {' '.join(map(str, genotype.path))}", fontsize=10)
    save_both(fig, out_stem)
    return points


def save_diagrams(genotype: Genotype, out_dir: str | os.PathLike) -> list[Path]:
    """Both diagrams of ``genotype`` into ``out_dir``: genotype_cell.png/.svg and
    genotype_path.png/.svg; returns the four paths."""
    out = Path(out_dir)
    draw_cell(genotype, out / CELL_NAME)
    draw_path(genotype, out / PATH_NAME)
    return [out / f"{name}.{ext}" for name in (CELL_NAME, PATH_NAME) for ext in ("png", "svg")]
