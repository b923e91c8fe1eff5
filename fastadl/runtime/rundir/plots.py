"""PNG plots every run directory gets (loss and mIoU curves, the confusion matrix) and the
Agg figure helpers the search's and the study's plots draw with.

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


def figure(width: float, height: float):
    """A pyplot-free Figure with an Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, out_png: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG, creating its folder."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _xy(records: list[dict], key: str) -> tuple[str, list[float], list[float]]:
    """(x label, xs, ys) for records with a finite ``key``; x = step, else epoch, else index."""
    rows = [r for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    for x_key in ("step", "epoch"):
        if rows and all(isinstance(r.get(x_key), (int, float)) for r in rows):
            return x_key, [r[x_key] for r in rows], [r[key] for r in rows]
    return "record", list(range(len(rows))), [r[key] for r in rows]


def plot_curves(records: list[dict], out_png: str | os.PathLike) -> Path:
    """Loss (one line per record "kind") and validation mIoU against step or epoch.

    records: ``metrics.jsonl`` objects; missing keys, nulls and unknown kinds are tolerated.
    """
    fig = figure(10.0, 3.8)
    ax_loss, ax_miou = fig.subplots(1, 2)
    kinds = sorted({str(r.get("kind", "train")) for r in records if "loss" in r})
    drawn = False
    for kind in kinds:
        rows = [r for r in records if str(r.get("kind", "train")) == kind]
        x_key, xs, ys = _xy(rows, "loss")
        if xs:
            ax_loss.plot(xs, ys, label=f"{kind} loss", linewidth=1.2)
            ax_loss.set_xlabel(x_key)
            drawn = True
    x_key, xs, ys = _xy(records, "val_loss")
    if xs:
        ax_loss.plot(xs, ys, label="val loss", linewidth=1.2)
        drawn = True
    if drawn:
        ax_loss.legend(fontsize=8)
    else:
        ax_loss.text(0.5, 0.5, "no loss records", ha="center", va="center")
    ax_loss.set_title("loss")
    x_key, xs, ys = _xy(records, "val_miou")
    if xs:
        # metrics store mIoU as a fraction; show percent
        ax_miou.plot(xs, [100 * y for y in ys], marker="o", markersize=3, color="tab:green")
        ax_miou.set_xlabel(x_key)
    else:
        ax_miou.text(0.5, 0.5, "no val_miou records", ha="center", va="center")
    ax_miou.set_title("validation mIoU (%)")
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    return save(fig, out_png)


def plot_confusion(
    matrix: torch.Tensor, class_names: Sequence[str] | None, out_png: str | os.PathLike
) -> Path:
    """Row-normalised confusion matrix. matrix: (C, C) counts [target, pred]."""
    m = matrix.detach().double().cpu()
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix must be (C, C), got {tuple(m.shape)}")
    c = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a {c}-class matrix")
    rows = m.sum(1, keepdim=True)
    norm = torch.where(rows > 0, m / rows.clamp_min(1), torch.zeros_like(m))  # unseen class: 0
    side = 2.5 + 0.42 * c
    fig = figure(side + 1.0, side)
    ax = fig.add_subplot()
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(c))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(c))
    ax.set_yticklabels(names, fontsize=8)
    if c <= 25:  # beyond that the numbers no longer fit in a cell
        for r in range(c):
            for k in range(c):
                v = float(norm[r, k])
                if v >= 0.005:
                    color = "white" if v > 0.6 else "black"
                    ax.text(k, r, f"{v:.2f}", ha="center", va="center", fontsize=6, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("target")
    fig.colorbar(im, ax=ax, shrink=0.7, label="fraction of target pixels")
    ax.set_title("confusion matrix (row-normalised)")
    return save(fig, out_png)
