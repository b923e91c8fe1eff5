"""PASCAL VOC 2012 segmentation: palette PNG masks with 21 classes and 255 = boundary/ignore,
split lists in ImageSets/Segmentation (docs/METHOD.md §6)."""

from __future__ import annotations

import os
from pathlib import Path

from fastadl.data.base import IGNORE_INDEX, Transform, color_map, make_lut
from fastadl.data.files import FileSegmentationDataset, read_list, require_dir, require_root

LAYOUT = """\
  <root>/JPEGImages/<id>.jpg
  <root>/SegmentationClass/<id>.png          (palette PNG: class index per pixel, 255 = ignore)
  <root>/ImageSets/Segmentation/{train,val}.txt   (one <id> per line)
  (<root> may be VOC2012 itself, or a folder holding VOC2012/ or VOCdevkit/VOC2012/)"""

CLASS_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip
PALETTE = color_map(len(CLASS_NAMES))


def _find_voc_root(root: Path) -> Path:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    return root  # require_dir below names what is missing


class VOC(FileSegmentationDataset):
    """ids are the VOC image ids, e.g. ``2007_000032``."""

    def __init__(
        self, root: str | os.PathLike | None, split: str, transform: Transform | None = None
    ) -> None:
        root = _find_voc_root(require_root(root, "voc", LAYOUT))
        image_dir = require_dir(root / "JPEGImages", "voc", LAYOUT)
        mask_dir = require_dir(root / "SegmentationClass", "voc", LAYOUT)
        list_file = require_dir(root / "ImageSets" / "Segmentation", "voc", LAYOUT) / f"{split}.txt"
        samples = [(i, image_dir / f"{i}.jpg", mask_dir / f"{i}.png") for i in read_list(list_file)]
        lut = make_lut({**{c: c for c in range(len(CLASS_NAMES))}, IGNORE_INDEX: IGNORE_INDEX})
        super().__init__(samples, CLASS_NAMES, PALETTE, lut, transform, source=f"voc {list_file}")
