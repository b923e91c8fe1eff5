"""Writers of tiny dataset trees in the real on-disk formats, for the data tests.

Images are 16×24 (H×W). Masks hold a known pattern of raw label values so a test can compute the
expected train labels itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 16, 24


def rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def label_pattern(values: list[int], h: int = H, w: int = W) -> np.ndarray:
    """A mask made of vertical bands, one per value, in order (uint8 or uint16 by range)."""
    dtype = np.uint16 if max(values) > 255 else np.uint8
    bands = np.array_split(np.arange(w), len(values))
    mask = np.zeros((h, w), dtype=dtype)
    for v, cols in zip(values, bands, strict=True):
        mask[:, cols] = v
    return mask


def save(path: Path, array: np.ndarray, palette: list[int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    if palette is not None:
        im.putpalette(palette)  # an "L" image becomes "P" with its values as palette indices
    im.save(path)
    return path


def write_cityscapes(root: Path, split: str = "train", masks: dict | None = None) -> dict:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/.../*_gtFine_labelIds.png, each
    image the size of its mask. Returns {id: raw labelId mask}."""
    masks = masks or {
        "aachen/aachen_000000_000019": label_pattern([0, 7, 8, 26]),
        "aachen/aachen_000001_000019": label_pattern([11, 24, 33, 1]),
        "bochum/bochum_000000_000313": label_pattern([23, 21, 6, 7]),
    }
    for i, (item_id, mask) in enumerate(masks.items()):
        city, stem = item_id.split("/")
        save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rgb(i, *mask.shape))
        save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", mask)
        # The other gtFine files sit beside it and must be ignored.
        save(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", rgb(100 + i, *mask.shape))
    return masks


def voc_palette() -> list[int]:
    from fastadl.data.base import color_map

    return [c for rgb_ in color_map(256) for c in rgb_]


def write_voc(root: Path, splits: dict | None = None) -> dict:
    """VOC2012/{JPEGImages, SegmentationClass (palette PNG), ImageSets/Segmentation}. Returns
    {split: {id: mask}}."""
    splits = splits or {
        "train": {
            "2007_000032": label_pattern([0, 1, 255, 15]),
            "2007_000039": label_pattern([20, 0, 7]),
        },
        "val": {"2007_000063": label_pattern([0, 12, 255])},
    }
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        (seg / f"{split}.txt").write_text("".join(f"{i}\n" for i in items))
        for k, (item_id, mask) in enumerate(items.items()):
            save(root / "JPEGImages" / f"{item_id}.jpg", rgb(k))
            save(root / "SegmentationClass" / f"{item_id}.png", mask, palette=voc_palette())
    return splits


def write_ade20k(root: Path, split_dir: str = "training", masks: dict | None = None) -> dict:
    """root/images/<split_dir>/*.jpg + root/annotations/<split_dir>/*.png (root is the
    ADEChallengeData2016 folder). Returns {id: raw mask}."""
    prefix = {"training": "ADE_train", "validation": "ADE_val"}[split_dir]
    masks = masks or {
        f"{prefix}_00000001": label_pattern([0, 1, 150, 3]),
        f"{prefix}_00000002": label_pattern([13, 0]),
    }
    for k, (item_id, mask) in enumerate(masks.items()):
        save(root / "images" / split_dir / f"{item_id}.jpg", rgb(k))
        save(root / "annotations" / split_dir / f"{item_id}.png", mask)
    return masks


def write_folder(root: Path, classes=("sky", "grass", "cow"), masks: dict | None = None) -> dict:
    """root/images/*.{png,jpg}, root/masks/*.png, root/classes.txt. Returns {id: mask}."""
    masks = masks or {
        "a": label_pattern([0, 1, 2]),
        "b": label_pattern([2, 255]),
        "c": label_pattern([1]),
    }
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for k, (item_id, mask) in enumerate(masks.items()):
        ext = ".jpg" if k % 2 else ".png"
        save(root / "images" / f"{item_id}{ext}", rgb(k))
        save(root / "masks" / f"{item_id}.png", mask)
    return masks
