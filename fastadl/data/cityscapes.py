"""Cityscapes (fine annotations): the 34 labelIds mapped to the 19 trainIds by the official table
in ``cityscapesscripts`` (docs/METHOD.md §6); every other id becomes 255 (ignore)."""

from __future__ import annotations

import os

from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS

from fastadl.data.base import IGNORE_INDEX, Transform, make_lut
from fastadl.data.files import FileSegmentationDataset, require_dir, require_root

LAYOUT = """\
  <root>/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png"""

_IMAGE_SUFFIX = "_leftImg8bit.png"
_MASK_SUFFIX = "_gtFine_labelIds.png"

_TRAIN_LABELS = sorted(
    (lab for lab in CITYSCAPES_LABELS if 0 <= lab.trainId < IGNORE_INDEX),
    key=lambda lab: lab.trainId,
)
CLASS_NAMES = [lab.name for lab in _TRAIN_LABELS]
PALETTE = [tuple(lab.color) for lab in _TRAIN_LABELS]
# labelId → trainId; the ignored classes (trainId 255 or -1) → 255. Ids outside the table
# (e.g. a stray 40) stay invalid and are reported by read_mask.
LABEL_TO_TRAIN = {
    lab.id: (lab.trainId if 0 <= lab.trainId < IGNORE_INDEX else IGNORE_INDEX)
    for lab in CITYSCAPES_LABELS
    if 0 <= lab.id < 256
}


class Cityscapes(FileSegmentationDataset):
    """ids are ``<city>/<city>_<seq>_<frame>``, e.g. ``aachen/aachen_000000_000019``."""

    def __init__(
        self, root: str | os.PathLike | None, split: str, transform: Transform | None = None
    ) -> None:
        root = require_root(root, "cityscapes", LAYOUT)
        image_dir = require_dir(root / "leftImg8bit" / split, "cityscapes", LAYOUT)
        mask_dir = require_dir(root / "gtFine" / split, "cityscapes", LAYOUT)
        samples = []
        for image_path in sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}")):
            city = image_path.parent.name
            stem = image_path.name[: -len(_IMAGE_SUFFIX)]
            samples.append((f"{city}/{stem}", image_path, mask_dir / city / (stem + _MASK_SUFFIX)))
        super().__init__(
            samples,
            CLASS_NAMES,
            PALETTE,
            make_lut(LABEL_TO_TRAIN),
            transform,
            source=f"cityscapes {image_dir}",
        )
