"""Evaluation of a trained checkpoint: single- or multi-scale (+ flip) mIoU on a dataset split.

Writes ``plots/confusion.png`` and ``eval.json`` (per-class IoU, mIoU, pixel accuracy, the
settings used) into the output directory; under torchrun every rank evaluates its share of
the images and the confusion matrix is summed over ranks (rank 0 writes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fastadl.data import build_dataset
from fastadl.deploy.inference import MultiScaleInference, model_from_checkpoint
from fastadl.runtime import distributed as dist
from fastadl.runtime.distributed import resolve_device
from fastadl.runtime.loading import pre_resize
from fastadl.runtime.metrics import ConfusionMatrix
from fastadl.runtime.precision import Precision
from fastadl.runtime.rundir.files import write_json_atomic
from fastadl.runtime.rundir.plots import plot_confusion
from fastadl.runtime.validation import confusion_over


@dataclass
class EvalResult:
    miou: float
    pixel_accuracy: float
    confusion: ConfusionMatrix
    class_names: list[str]
    out_dir: Path | None  # where eval.json and plots/confusion.png went (None on ranks > 0)

    def table(self) -> str:
        """Per-class IoU table, then mIoU and pixel accuracy (percent)."""
        acc = "n/a" if math.isnan(self.pixel_accuracy) else f"{100 * self.pixel_accuracy:.2f}"
        return f"{self.confusion.per_class_table(self.class_names)}\npixel accuracy: {acc} %"


def run_evaluate(
    checkpoint: str | os.PathLike,
    *,
    data: str | None = None,
    data_root: str | None = None,
    split: str = "val",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 1,
    workers: int = 0,
    limit: int = 0,
    device: str = "auto",
    amp: str = "off",
) -> EvalResult:
    """Evaluate the network in ``checkpoint`` (a run directory or a checkpoint file).

    The network is rebuilt from the checkpoint's config and genotype; the dataset is the one it
    was trained on unless ``data`` / ``data_root`` say otherwise (on that dataset, at the
    resolution its validation used: the config's pre-resize when ``val_resize``). ``limit`` > 0 evaluates only
    the first ``limit`` images. Output goes to ``out_dir`` (default: the checkpoint's run dir).
    """
    dev = dist.init_distributed(resolve_device(device))
    loaded = model_from_checkpoint(checkpoint, dev)
    cfg = loaded.config
    name = data or cfg.data
    root = data_root if data_root is not None else (cfg.data_root if name == cfg.data else None)
    extra = {"image_size": cfg.image_size} if name == "synthetic" and cfg.image_size else {}
    # The training run's validation resolution (its pre-resize with val_resize), on its dataset.
    resize = pre_resize(cfg) if cfg.val_resize and name == cfg.data else None
    dataset = build_dataset(
        name, root, split, crop_size=None, train=False, seed=cfg.seed, resize=resize, **extra
    )
    if dataset.num_classes != len(loaded.class_names):
        raise ValueError(
            f"{name} has {dataset.num_classes} classes but the checkpoint's network predicts "
            f"{len(loaded.class_names)}"
        )
    model = MultiScaleInference(loaded.model, scales, flip)
    cm = confusion_over(model, dataset, batch_size, workers, dev, Precision(amp, dev.type), limit)
    result = EvalResult(cm.miou(), cm.pixel_accuracy(), cm, list(dataset.class_names), None)
    if dist.is_main_process():
        out = Path(out_dir) if out_dir is not None else loaded.run_dir or Path(".")
        (out / "plots").mkdir(parents=True, exist_ok=True)
        plot_confusion(cm.matrix, dataset.class_names, out / "plots" / "confusion.png")
        iou = cm.iou().tolist()
        write_json_atomic(
            out / "eval.json",
            {
                "checkpoint": str(checkpoint),
                "step": loaded.step,
                "data": name,
                "split": split,
                "images": len(dataset) if limit <= 0 else min(limit, len(dataset)),
                "scales": list(model.scales),
                "flip": flip,
                "miou": _finite(result.miou),
                "pixel_accuracy": _finite(result.pixel_accuracy),
                "per_class_iou": {
                    n: _finite(v) for n, v in zip(dataset.class_names, iou, strict=True)
                },
                "confusion": cm.matrix.cpu().tolist(),
            },
        )
        result.out_dir = out
    dist.barrier()
    return result


def _finite(x: float) -> float | None:
    """JSON has no NaN: a class never seen has IoU null."""
    return None if math.isnan(x) else float(x)
