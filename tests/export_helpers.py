"""A tiny trained network whose label maps are worth comparing, and test images, for the
export and native-runner tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fastadl.data.synthetic import render_scene
from fastadl.data.transforms import to_tensors
from fastadl.deploy.inference import model_from_checkpoint
from fastadl.runtime.rundir.checkpoint import load_checkpoint, save_checkpoint
from fastadl.train.config import resolve
from fastadl.train.trainer import run_train

EXPORT_SIZE = (40, 48)  # H, W of the exported tiny packages: small, and not square


def scene(seed: int, h: int, w: int) -> np.ndarray:
    """A synthetic scene cropped to (h, w, 3) uint8."""
    image, _ = render_scene(np.random.default_rng(seed), max(h, w))
    return np.ascontiguousarray(image[:h, :w])


def tiny_trained_run(run: Path) -> Path:
    """32 training steps of the tiny model on 32×32 synthetic scenes (~5 s on one thread).

    After so few steps every pixel is still called background, which would make comparing
    label maps pointless; so the classifier's bias is then centred on one scene's mean logits
    (and the checkpoint re-saved), which makes every class win somewhere with clear margins.
    """
    cfg = resolve(
        "tiny",
        {
            "num_images": 64,
            "image_size": 32,
            "crop_size": 32,
            "batch_size": 4,
            "epochs": 2,
            "val_images": 2,
            "workers": 0,
            "threads": 0,
            "device": "cpu",
        },
    )
    run_train(cfg, run, progress=False)
    model = model_from_checkpoint(run, torch.device("cpu")).model
    x, _ = to_tensors(scene(3, 48, 48), np.zeros((48, 48), dtype=np.int64))
    with torch.no_grad():
        mean_logits = model(x[None])[0].mean((1, 2))
    state = load_checkpoint(run)
    state["model"]["decoder.classifier.bias"] = (
        state["model"]["decoder.classifier.bias"] - mean_logits
    )
    save_checkpoint(run, state, "centred")
    return run
