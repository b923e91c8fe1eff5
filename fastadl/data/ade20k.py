"""ADE20K (MIT SceneParsing, ADEChallengeData2016): 150 classes; raw 0 ("other") → 255 and
1..150 → 0..149 (docs/METHOD.md §6)."""

from __future__ import annotations

import os

from fastadl.data.base import IGNORE_INDEX, Transform, color_map, make_lut
from fastadl.data.files import FileSegmentationDataset, require_dir, require_root

LAYOUT = """\
  <root>/ADEChallengeData2016/images/{training,validation}/ADE_*.jpg
  <root>/ADEChallengeData2016/annotations/{training,validation}/ADE_*.png
  (<root> may also be the ADEChallengeData2016 folder itself)"""

_SPLIT_DIRS = {"train": "training", "val": "validation"}

CLASS_NAMES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
]  # fmt: skip
# Class c is drawn with colour-map entry c + 1 so that no class is black.
PALETTE = color_map(len(CLASS_NAMES) + 1)[1:]


class ADE20K(FileSegmentationDataset):
    """ids are the file stems, e.g. ``ADE_train_00000001``."""

    def __init__(
        self, root: str | os.PathLike | None, split: str, transform: Transform | None = None
    ) -> None:
        root = require_root(root, "ade20k", LAYOUT)
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        image_dir = require_dir(root / "images" / _SPLIT_DIRS[split], "ade20k", LAYOUT)
        mask_dir = require_dir(root / "annotations" / _SPLIT_DIRS[split], "ade20k", LAYOUT)
        samples = [(p.stem, p, mask_dir / f"{p.stem}.png") for p in sorted(image_dir.glob("*.jpg"))]
        lut = make_lut({0: IGNORE_INDEX, **{c: c - 1 for c in range(1, len(CLASS_NAMES) + 1)}})
        super().__init__(
            samples, CLASS_NAMES, PALETTE, lut, transform, source=f"ade20k {image_dir}"
        )
