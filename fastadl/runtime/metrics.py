"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy.

The matrix is accumulated on the predictions' device with one ``torch.bincount`` per update, so
evaluation never copies masks to the host; under DDP, ``all_reduce`` sums it over ranks before the
scores are read (docs/METHOD.md §3: mIoU over the classes, ignore label 255).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist


class ConfusionMatrix:
    """(C, C) int64 counts ``matrix[target, pred]`` over the pixels whose target is not ignored."""

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        device: torch.device | str | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Zero the counts (keeps the device)."""
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: (N, H, W) integer class ids; target == ignore_index pixels are skipped.

        A target id outside [0, C) that is not the ignore label is a data error (e.g. an
        unmapped Cityscapes id): raise instead of silently dropping or miscounting it.
        """
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        c = self.num_classes
        if self.matrix.device != pred.device:
            self.matrix = self.matrix.to(pred.device)
        pred = pred.reshape(-1).long()
        target = target.reshape(-1).to(pred.device).long()
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        if target.numel() == 0:
            return
        bad = (target < 0) | (target >= c)
        if bool(bad.any()):
            value = int(target[bad][0])
            raise ValueError(
                f"target label {value} is outside [0, {c}) and is not the ignore label"
            )
        if bool(((pred < 0) | (pred >= c)).any()):
            raise ValueError(f"prediction outside [0, {c})")
        counts = torch.bincount(target * c + pred, minlength=c * c)
        self.matrix += counts.reshape(c, c)

    def all_reduce(self) -> None:
        """Sum the matrix over all torch.distributed ranks; a no-op when not initialised."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def iou(self) -> torch.Tensor:
        """(C,) float64 IoU = TP / (TP + FP + FN); NaN for a class absent from target and pred."""
        m = self.matrix.double()
        tp = m.diagonal()
        union = m.sum(0) + m.sum(1) - tp
        # 0/0 → NaN marks "class never seen": it is excluded from the mean, not counted as 0.
        return tp / union

    def miou(self) -> float:
        """Mean IoU over the classes present in target or prediction; NaN if none is."""
        iou = self.iou()
        present = ~iou.isnan()
        if not bool(present.any()):
            return math.nan
        return float(iou[present].mean())

    def pixel_accuracy(self) -> float:
        """Correct / counted pixels; NaN before any pixel was counted."""
        total = int(self.matrix.sum())
        if total == 0:
            return math.nan
        return int(self.matrix.diagonal().sum()) / total

    def per_class_table(self, class_names: Sequence[str] | None = None) -> str:
        """A readable table: one line per class with IoU (%) and its pixel count, then the mean."""
        names = list(class_names) if class_names is not None else []
        if len(names) < self.num_classes:
            names += [f"class_{i}" for i in range(len(names), self.num_classes)]
        width = max(12, *(len(n) for n in names[: self.num_classes]))
        iou = self.iou().tolist()
        pixels = self.matrix.sum(1).tolist()
        lines = [f"{'class':<{width}}  {'IoU %':>7}  {'pixels':>12}"]
        for name, value, count in zip(names, iou, pixels, strict=False):
            shown = "    n/a" if math.isnan(value) else f"{100 * value:7.2f}"
            lines.append(f"{name:<{width}}  {shown}  {count:>12d}")
        miou = self.miou()
        shown = "    n/a" if math.isnan(miou) else f"{100 * miou:7.2f}"
        lines.append(f"{'mIoU':<{width}}  {shown}")
        return "\n".join(lines)
