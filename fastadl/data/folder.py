"""A user's own dataset as a plain folder of images, index masks and class names."""

from __future__ import annotations

import os
from pathlib import Path

from fastadl.data.base import IGNORE_INDEX, DatasetError, Transform, color_map, make_lut
from fastadl.data.files import FileSegmentationDataset, read_list, require_dir, require_root

LAYOUT = """\
  <root>/images/<name>.jpg|.jpeg|.png
  <root>/masks/<name>.png      (single-channel PNG: class index per pixel, 255 = ignore)
  <root>/classes.txt           (one class name per line, class 0 first)
  <root>/train.txt, val.txt    (optional: one <name> per line; without them both splits are all
                                images, and the search's own trainA/trainB split divides them)"""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class ImageFolder(FileSegmentationDataset):
    """ids are the image file stems."""

    def __init__(
        self, root: str | os.PathLike | None, split: str, transform: Transform | None = None
    ) -> None:
        root = require_root(root, "folder", LAYOUT)
        image_dir = require_dir(root / "images", "folder", LAYOUT)
        mask_dir = require_dir(root / "masks", "folder", LAYOUT)
        classes_file = root / "classes.txt"
        if not classes_file.is_file():
            raise DatasetError(f"folder: missing {classes_file}; expected layout:\n{LAYOUT}")
        class_names = read_list(classes_file)
        if not class_names:
            raise DatasetError(f"folder: {classes_file} lists no class names")
        if len(class_names) > IGNORE_INDEX:
            raise DatasetError(
                f"folder: {classes_file} lists {len(class_names)} classes; at most "
                f"{IGNORE_INDEX} fit in 8-bit masks with {IGNORE_INDEX} = ignore"
            )

        images: dict[str, Path] = {}
        for p in sorted(image_dir.iterdir()):
            if p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file():
                continue
            if p.stem in images:
                raise DatasetError(f"folder: {images[p.stem]} and {p} share the name {p.stem!r}")
            images[p.stem] = p

        lists = [root / f"{s}.txt" for s in ("train", "val")]
        if any(f.is_file() for f in lists):
            # Once split lists exist, the requested one must too: falling back to all images
            # would put training images into validation.
            list_file = root / f"{split}.txt"
            names = [_strip_extension(n) for n in read_list(list_file)]
            unknown = [n for n in names if n not in images]
            if unknown:
                raise DatasetError(
                    f"folder: {list_file} names {len(unknown)} image(s) not in {image_dir} "
                    f"(e.g. {unknown[:3]})"
                )
        else:
            names = list(images)
        samples = [(n, images[n], mask_dir / f"{n}.png") for n in names]
        lut = make_lut({**{c: c for c in range(len(class_names))}, IGNORE_INDEX: IGNORE_INDEX})
        super().__init__(
            samples,
            class_names,
            color_map(len(class_names)),
            lut,
            transform,
            source=f"folder {root}",
        )


def _strip_extension(name: str) -> str:
    for ext in IMAGE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name
