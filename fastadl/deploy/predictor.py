"""Segmenting image files with a trained checkpoint: colour masks and overlays a person can view.

For each input ``<name>.<ext>`` two PNGs are written: ``<name>_mask.png`` (a palette PNG: the
pixel values are class ids, shown in the dataset's colours) and ``<name>_overlay.png`` (the
image blended with the coloured mask). A file that cannot be read is reported and skipped; the
other images are still processed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastadl.data.base import DatasetError, color_map, read_image
from fastadl.data.transforms import to_tensors
from fastadl.deploy.fixed_size import FixedSizeInference
from fastadl.deploy.inference import LoadedModel, MultiScaleInference
from fastadl.runtime.precision import Precision

OVERLAY_ALPHA = 0.5  # weight of the mask colour in the overlay


def palette_for(loaded: LoadedModel) -> list[tuple[int, int, int]]:
    """The checkpoint's dataset palette, completed with VOC colours if it is short."""
    n = len(loaded.class_names)
    palette = list(loaded.palette[:n])
    return palette + color_map(n)[len(palette) :]


def colorize(mask: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """mask: (H, W) class ids → (H, W, 3) uint8 colours."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[mask]


def mask_image(mask: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> Image.Image:
    """A palette ('P') PNG image: values are class ids, viewers show the palette colours."""
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = [v for c in palette for v in c]
    im.putpalette(flat + [0] * (768 - len(flat)))
    return im


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """image, colours: (H, W, 3) uint8 → their blend (H, W, 3) uint8."""
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return mixed.round().clip(0, 255).astype(np.uint8)


@torch.no_grad()
def segment(
    model: torch.nn.Module, image: np.ndarray, device: torch.device, precision: Precision
) -> np.ndarray:
    """image: (H, W, 3) uint8 RGB → (H, W) int class ids (model: logits or probabilities)."""
    x, _ = to_tensors(image, np.zeros(image.shape[:2], dtype=np.int64))
    with precision.autocast():
        scores = model(x[None].to(device))
    return scores[0].argmax(0).cpu().numpy()


@dataclass
class PredictReport:
    written: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # one message per file that failed


def _unique_stem(path: Path, used: set[str]) -> str:
    """The file's stem, suffixed _2, _3, ... when two inputs share it (a/x.png, b/x.png)."""
    stem, k = path.stem, 1
    while stem in used:
        k += 1
        stem = f"{path.stem}_{k}"
    used.add(stem)
    return stem


def predict_files(
    loaded: LoadedModel,
    images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    amp: str = "off",
    size: tuple[int, int] | None = None,
    progress=None,
) -> PredictReport:
    """Segment every file of ``images`` into ``out_dir``; unreadable files go to failures.

    size: run the network at this fixed (H, W) input, as an exported package does
    (fixed_size.py); None runs it at each image's own size.
    progress: optional callable(path) called before each image (e.g. a progress bar's update).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = next(loaded.model.parameters()).device
    precision = Precision(amp, device.type)
    net = loaded.model if size is None else FixedSizeInference(loaded.model, size)
    model = MultiScaleInference(net, scales, flip).eval()
    palette = palette_for(loaded)
    report = PredictReport()
    used: set[str] = set()
    for name in images:
        path = Path(name)
        if progress is not None:
            progress(path)
        try:
            image = read_image(path)
        except DatasetError as e:
            report.failures.append(str(e))
            continue
        mask = segment(model, image, device, precision)
        stem = _unique_stem(path, used)
        mask_path, overlay_path = out / f"{stem}_mask.png", out / f"{stem}_overlay.png"
        mask_image(mask, palette).save(mask_path)
        Image.fromarray(overlay(image, colorize(mask, palette))).save(overlay_path)
        report.written += [mask_path, overlay_path]
    return report
