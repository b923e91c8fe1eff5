"""A study's plots: final val mIoU per group (every run, mean ± std) and op-group shares per
retrained cell. Drawn like the run plots (fastadl/runtime/rundir/plots.py: pyplot-free Agg figures)."""

from __future__ import annotations

import os
from pathlib import Path

from fastadl.runtime.rundir.plots import figure, save
from fastadl.search.arch_stats import OP_GROUPS, op_histogram


def plot_groups(
    stats: dict[str, dict], title: str, out_png: str | os.PathLike, dots: str = "runs"
) -> Path:
    """stats: group → {"values", "mean", "std"} (report.group_stats); ``dots`` names what the
    values are (runs, or genotype means)."""
    fig = figure(1.6 + 1.5 * len(stats), 3.8)
    ax = fig.add_subplot()
    for x, s in enumerate(stats.values()):
        values = [100 * v for v in s["values"]]
        offsets = [(i - (len(values) - 1) / 2) * 0.06 for i in range(len(values))]
        ax.scatter([x + o for o in offsets], values, s=22, color=f"C{x}", zorder=3)
        ax.errorbar(x + 0.25, 100 * s["mean"], yerr=100 * s["std"], fmt="s", color="0.2",
                    capsize=4, markersize=5, zorder=2)  # fmt: skip
    ax.set_xticks(range(len(stats)))
    ax.set_xticklabels([f"{g}\n(n = {s['n']})" for g, s in stats.items()], fontsize=8)
    ax.set_xlim(-0.6, len(stats) - 0.4)
    ax.set_ylabel("final val mIoU (%)")
    ax.set_title(f"{title}: {dots} (dots), mean ± std (square)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out_png)


def plot_op_shares(results: list[dict], out_png: str | os.PathLike) -> Path:
    """Stacked bars: share of skip / pool / sep conv / dil conv in each run's cell."""
    names = [r["name"] for r in results]
    shares = [op_histogram([tuple(p) for p in r["genotype"]["cell"]]) for r in results]
    fig = figure(2.0 + 0.7 * len(results), 3.8)
    ax = fig.add_subplot()
    bottom = [0.0] * len(results)
    for k, group in enumerate(OP_GROUPS):
        heights = [s[group] for s in shares]
        ax.bar(range(len(results)), heights, bottom=bottom, color=f"C{k}", label=group)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels(names, rotation=40, ha="right", fontsize=7)
    ax.set_ylabel("share of the cell's ops")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("op groups per retrained cell", fontsize=9)
    return save(fig, out_png)


def plot_pareto(
    points: list[dict], front: list[int], unit: str, out_png: str | os.PathLike
) -> Path:
    """mIoU against measured latency. points: {"cost", "score", "group", "label"} each; front:
    indices of the undominated points (stats.pareto_front), joined by a step line and ringed."""
    fig = figure(6.4, 4.4)
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(p["group"] for p in points))
    for k, group in enumerate(groups):
        mine = [p for p in points if p["group"] == group]
        ax.scatter([p["cost"] for p in mine], [100 * p["score"] for p in mine], s=28,
                   color=f"C{k}", label=group, zorder=3, marker="o" if k else "*")  # fmt: skip
        for p in mine:
            if p.get("label"):
                ax.annotate(p["label"], (p["cost"], 100 * p["score"]), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")  # fmt: skip
    xs = [points[i]["cost"] for i in front]
    ys = [100 * points[i]["score"] for i in front]
    ax.step(xs, ys, where="post", color="0.3", linewidth=1, zorder=2, label="Pareto front")
    ax.scatter(xs, ys, s=110, facecolors="none", edgecolors="0.2", zorder=4)
    ax.set_xlabel(f"measured latency ({unit})")
    ax.set_ylabel("final val mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("accuracy against latency (undominated points ringed)", fontsize=9)
    return save(fig, out_png)
