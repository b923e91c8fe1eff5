"""The on-disk dataset shared by every real loader: a list of (id, image file, mask file) pairs,
a raw-value → train-label table, and the checks that turn bad files into DatasetErrors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fastadl.data.base import (
    DatasetError,
    SegmentationDataset,
    Transform,
    check_same_size,
    read_image,
    read_mask,
)


class FileSegmentationDataset(SegmentationDataset):
    """Items read from image/mask files; masks mapped through ``lut`` (see base.make_lut).

    Every image must have its mask: a missing one is an error at construction, never a skip.
    """

    def __init__(
        self,
        samples: list[tuple[str, Path, Path]],
        class_names: list[str],
        palette: list[tuple[int, int, int]],
        lut: np.ndarray,
        transform: Transform | None = None,
        source: str = "dataset",
    ) -> None:
        super().__init__(transform)
        if not samples:
            raise DatasetError(f"{source}: no images found")
        seen: dict[str, Path] = {}
        for item_id, image_path, mask_path in samples:
            if item_id in seen:
                raise DatasetError(
                    f"{source}: two images share the id {item_id!r}: {seen[item_id]} and "
                    f"{image_path}"
                )
            seen[item_id] = image_path
            if not image_path.is_file():
                raise DatasetError(f"{source}: missing image file {image_path}")
            if not mask_path.is_file():
                raise DatasetError(
                    f"{source}: missing mask file {mask_path} for image {image_path}"
                )
        self.ids = [s[0] for s in samples]
        self.image_paths = [s[1] for s in samples]
        self.mask_paths = [s[2] for s in samples]
        self.class_names = list(class_names)
        self.palette = list(palette)
        self.lut = lut

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.image_paths[index], self.mask_paths[index]
        image = read_image(image_path)
        mask = read_mask(mask_path, self.lut, self.num_classes, image_path)
        check_same_size(image, mask, image_path, mask_path)
        return image, mask


def require_root(root: str | os.PathLike | None, name: str, layout: str) -> Path:
    """``root`` as a Path, or a DatasetError telling the user which flag and layout to use."""
    if root is None or str(root) == "":
        raise DatasetError(
            f"--data {name} needs --data-root pointing at the dataset, laid out as:\n{layout}"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"--data-root {path} is not a directory; --data {name} expects:\n{layout}"
        )
    return path


def require_dir(path: Path, name: str, layout: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{name}: missing directory {path}; expected layout:\n{layout}")
    return path


def read_list(path: Path) -> list[str]:
    """Non-empty, stripped lines of a split list file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DatasetError(f"missing split list {path}") from None
    except OSError as e:
        raise DatasetError(f"cannot read split list {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise DatasetError(f"split list {path} is not a UTF-8 text file") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
