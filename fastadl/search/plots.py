"""The search's PNG plots in a run directory's ``plots/``: the β trellis, α per edge, α's history
(curves and the confusion matrix: fastadl/runtime/rundir/plots.py).

matplotlib is imported inside the functions (so ``--help`` and ``import fastadl`` stay fast) and
drawn through an explicit Agg canvas instead of pyplot, so no global backend is switched and no
figure registry is kept: safe to call from a training loop, a test or a notebook alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from fastadl.runtime.rundir.plots import figure, save
from fastadl.space.cell_topology import edge_offset, num_edges
from fastadl.space.trellis import NUM_LEVELS, levels_at, target_level, transition_mask


def trellis_axes(ax, layers: int, margin: float) -> None:
    """Layers (stem, 1..L) across, levels down (finer, higher resolution at the top)."""
    ax.set_xticks(range(layers + 1))
    ax.set_xticklabels(["stem", *map(str, range(1, layers + 1))])
    ax.set_yticks(range(NUM_LEVELS))
    ax.set_yticklabels([f"/{4 * 2**s}" for s in range(NUM_LEVELS)])
    ax.set_ylim(NUM_LEVELS - 1 + margin, -margin)
    ax.set_xlabel("layer")
    ax.set_ylabel("downsample")


def plot_betas(
    normalized_betas: torch.Tensor,
    path: Sequence[int] | None,
    out_png: str | os.PathLike,
) -> Path:
    """The trellis: x = layer 0..L, y = level (/4 at the top … /32 at the bottom).

    normalized_betas: (L, 4, 3) from ``trellis.normalize_betas``; every allowed edge is drawn with
    width and opacity proportional to its weight. path: L levels for layers 1..L (the stem is
    level 0 at layer 0), e.g. ``genotype.viterbi(...)``, drawn on top in red; None draws none.
    """
    betas = normalized_betas.detach().float().cpu()
    if betas.dim() != 3 or betas.shape[1:] != (NUM_LEVELS, 3):
        raise ValueError(f"normalized_betas must be (L, 4, 3), got {tuple(betas.shape)}")
    layers = betas.shape[0]
    mask = transition_mask(layers)
    fig = figure(max(6.0, 0.6 * layers + 2.0), 3.6)
    ax = fig.add_subplot()
    for i in range(layers):
        for s in levels_at(i):
            for d in range(3):
                if mask[i, s, d]:
                    w = float(betas[i, s, d])
                    ax.plot(
                        [i, i + 1],
                        [s, target_level(s, d)],
                        color="tab:blue",
                        linewidth=0.3 + 5.0 * w,
                        alpha=0.15 + 0.8 * w,
                        solid_capstyle="round",
                        zorder=1,
                    )
    nodes = [(layer, s) for layer in range(layers + 1) for s in levels_at(layer)]
    ax.scatter(*zip(*nodes, strict=True), s=28, color="0.25", zorder=2)
    if path is not None:
        if len(path) != layers:
            raise ValueError(f"path has {len(path)} levels, expected {layers}")
        xs, ys = list(range(layers + 1)), [0, *path]
        ax.plot(xs, ys, color="tab:red", linewidth=2.5, marker="o", zorder=3, label="decoded path")
        ax.legend(loc="lower left", fontsize=8)
    trellis_axes(ax, layers, 0.5)
    ax.set_title("normalised β (line width ∝ weight)")
    return save(fig, out_png)


def edge_labels(num_edge_rows: int) -> list[str]:
    """Row labels of α in DARTS order: 'b1←in0', 'b3←b1' (blocks 1-based, inputs in0, in1)."""
    blocks = 0
    while num_edges(blocks) < num_edge_rows:
        blocks += 1
    if num_edges(blocks) != num_edge_rows:
        raise ValueError(f"{num_edge_rows} rows is not the edge count of any cell")
    labels = [""] * num_edge_rows
    for b in range(blocks):
        for src in range(2 + b):
            name = f"in{src}" if src < 2 else f"b{src - 1}"
            labels[edge_offset(b) + src] = f"b{b + 1}←{name}"
    return labels


def plot_alphas(
    alphas: torch.Tensor, primitives: Sequence[str], out_png: str | os.PathLike
) -> Path:
    """Heatmap of softmax(α) per edge. alphas: (E, K) raw logits, K = len(primitives)."""
    a = alphas.detach().float().cpu()
    if a.dim() != 2 or a.shape[1] != len(primitives):
        raise ValueError(f"alphas must be (E, {len(primitives)}), got {tuple(a.shape)}")
    probs = a.softmax(-1)
    rows, cols = probs.shape
    fig = figure(2.5 + 0.75 * cols, 1.5 + 0.3 * rows)
    ax = fig.add_subplot()
    vmax = max(float(probs.max()), 1e-6)
    im = ax.imshow(probs.numpy(), cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(cols))
    ax.set_xticklabels(list(primitives), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(rows))
    ax.set_yticklabels(edge_labels(rows), fontsize=8)
    threshold = 0.6 * float(probs.max())
    for r in range(rows):
        for c in range(cols):
            v = float(probs[r, c])
            color = "black" if v > threshold else "white"
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6.5, color=color)
    fig.colorbar(im, ax=ax, shrink=0.6, label="softmax(α)")
    ax.set_title("α per edge")
    return save(fig, out_png)


def plot_alpha_history(
    records: list[dict], primitives: Sequence[str], out_png: str | os.PathLike
) -> Path:
    """softmax(α) of every edge against epoch (one panel per edge, one line per op), and the
    normalised entropies of α and β (1 = uniform) in a next panel; a budgeted search's expected
    and decoded cost against its target in a last one.

    records: ``metrics.jsonl`` objects; the search's epoch records carry ``alpha_softmax``
    (E × K), ``alpha_entropy`` and ``beta_entropy`` (fastadl/search/arch_stats.py), and with a
    budget ``expected_cost``, ``decoded_cost``, ``cost_target``, ``cost_unit``
    (fastadl/budget/search_term.py). Others are skipped.
    """
    rows = [r for r in records if r.get("kind") == "epoch" and r.get("alpha_softmax")]
    if not rows:
        raise ValueError("no epoch records with alpha_softmax to plot")
    epochs = [r["epoch"] for r in rows]
    probs = torch.tensor([r["alpha_softmax"] for r in rows], dtype=torch.float32)  # (T, E, K)
    _, edges, k = probs.shape
    if k != len(primitives):
        raise ValueError(f"alpha_softmax has {k} ops per edge, expected {len(primitives)}")
    budget = [r for r in rows if "expected_cost" in r]
    panels = edges + 1 + bool(budget)
    cols = min(5, panels)
    nrows = math.ceil(panels / cols)
    fig = figure(2.6 * cols, 2.0 * nrows + 0.6)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    colours = [f"C{i}" for i in range(k)]
    for e, label in enumerate(edge_labels(edges)):
        ax = axes[e]
        for op in range(k):
            ax.plot(epochs, probs[:, e, op], color=colours[op], linewidth=1.2, marker=".")
        ax.axhline(1.0 / k, color="0.6", linestyle="--", linewidth=0.8)  # uniform
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
    ax = axes[edges]
    for key, name in (("alpha_entropy", "α"), ("beta_entropy", "β")):
        points = [(r["epoch"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", label=f"{name} entropy")
    ax.set_ylim(0.0, 1.05)
    ax.set_title("normalised entropy (1 = uniform)", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    if budget:
        plot_cost(axes[edges + 1], budget)
    for ax in axes[panels:]:
        ax.set_visible(False)
    handles = [axes[0].lines[op] for op in range(k)]
    fig.legend(handles, list(primitives), loc="outside lower center", ncols=min(k, 8), fontsize=7)
    fig.suptitle("softmax(α) per edge over the search (dashed: uniform)", fontsize=9)
    return save(fig, out_png)


def plot_cost(ax, rows: list[dict]) -> None:
    """Expected and decoded cost per epoch, the target dashed."""
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["expected_cost"] for r in rows], marker=".", label="expected")
    ax.plot(epochs, [r["decoded_cost"] for r in rows], marker=".", label="decoded")
    ax.axhline(rows[-1]["cost_target"], color="0.3", linestyle="--", linewidth=0.8, label="target")
    ax.set_title(f"cost ({rows[-1]['cost_unit']})", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)


def save_plots(run_dir: Path, model, path: tuple[int, ...], metrics_path: Path) -> None:
    """β trellis with the decoded path, α per edge (now and over the epochs), loss/mIoU curves
    → run_dir/plots/*.png (the genotype's diagrams: fastadl/search/diagrams.py)."""
    from fastadl.runtime.rundir.metrics_log import read
    from fastadl.runtime.rundir.plots import plot_curves

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    with torch.no_grad():
        nb = model.normalized_betas().cpu()
        plot_betas(nb, path, plots / "betas.png")
        plot_alphas(model.alphas.detach().cpu(), model.primitives, plots / "alphas.png")
    records = read(metrics_path)
    plot_curves(records, plots / "curves.png")
    plot_alpha_history(records, model.primitives, plots / "alpha_history.png")
