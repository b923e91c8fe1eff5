"""Validation: mIoU and pixel accuracy of a model over a dataset (all ranks' pixels counted)."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.data import Dataset

from fastadl.nn.batchnorm import batch_statistics
from fastadl.runtime.loading import eval_loader
from fastadl.runtime.metrics import ConfusionMatrix
from fastadl.runtime.precision import Precision


@torch.no_grad()
def confusion_over(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    workers: int,
    device: torch.device,
    precision: Precision,
    limit: int = 0,
    batch_stats: bool = False,
) -> ConfusionMatrix:
    """Confusion matrix of argmax predictions over ``dataset`` (first ``limit`` items if > 0),
    summed over every process. Leaves the model in the mode it found it in.

    The model runs in eval mode; ``batch_stats``: except its BatchNorms, which normalise with
    each validation batch's own statistics (their running statistics are left untouched; see
    nn/batchnorm.py::batch_statistics).
    """
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(dataset.num_classes, device=device)
    with batch_statistics(model) if batch_stats else nullcontext():
        for images, masks in eval_loader(dataset, batch_size, workers, limit):
            images, masks = images.to(device), masks.to(device)
            with precision.autocast():
                logits = model(images)
            cm.update(logits.argmax(1), masks)
    cm.all_reduce()
    model.train(was_training)
    return cm


def evaluate_miou(
    model, dataset, batch_size, workers, device, precision, limit=0, batch_stats=False
):
    """(mIoU, pixel accuracy) of ``model`` on ``dataset``; see confusion_over for arguments."""
    cm = confusion_over(model, dataset, batch_size, workers, device, precision, limit, batch_stats)
    return cm.miou(), cm.pixel_accuracy()


def validation_scores(
    model, dataset, cfg, device, precision, batch_stats: bool = False
) -> tuple[float, float]:
    """(mIoU, pixel accuracy) of a loop's validation: its config's batch size, workers and
    image cap (``val_batch_size`` or ``batch_size``, ``workers``, ``val_images``)."""
    batch = cfg.val_batch_size or cfg.batch_size
    return evaluate_miou(
        model, dataset, batch, cfg.workers, device, precision, cfg.val_images, batch_stats
    )
