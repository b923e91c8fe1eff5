"""The dataset contract every loader follows, and the checked image/mask readers they share.

An item is ``(image, mask)``: image float32 ``(3, H, W)`` normalised with the ImageNet mean/std,
mask int64 ``(H, W)`` with values in ``[0, num_classes)`` or ``IGNORE_INDEX`` (255).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from fastadl.data.transforms import IGNORE_INDEX, to_tensors

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class DatasetError(ValueError):
    """Bad dataset input a user can cause: missing or corrupt file, size mismatch, bad label."""


class SegmentationDataset(Dataset):
    """Base class: subclasses set ``ids``, ``class_names``, ``palette`` and implement ``load``.

    ``load(i)`` returns the raw item as numpy: image uint8 ``(H, W, 3)`` and mask int64 ``(H, W)``
    already mapped to train labels and validated. ``__getitem__`` normalises it and applies the
    joint transform (random for training, identity for evaluation).
    """

    ids: list[str]
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    # Random-scale range used when the caller does not pass one (see transforms.TrainTransform).
    default_scale_range: tuple[float, float] = (0.5, 2.0)

    def __init__(self, transform: Transform | None = None) -> None:
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = to_tensors(*self.load(index))
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items, {self.num_classes} classes)"


class SegmentationSubset(SegmentationDataset):
    """The items of ``dataset`` named by ``ids``, in that order; keeps the dataset's metadata."""

    def __init__(self, dataset: SegmentationDataset, ids: Sequence[str]) -> None:
        position = {item_id: i for i, item_id in enumerate(dataset.ids)}
        missing = [i for i in ids if i not in position]
        if missing:
            raise DatasetError(
                f"{len(missing)} id(s) not in the dataset (e.g. {missing[:3]}); "
                "was the split made for another dataset or data root?"
            )
        super().__init__(dataset.transform)
        self.dataset = dataset
        self.indices = [position[i] for i in ids]
        self.ids = list(ids)
        self.class_names = dataset.class_names
        self.palette = dataset.palette

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.dataset.load(self.indices[index])


def subset(dataset: SegmentationDataset, ids: Sequence[str]) -> SegmentationSubset:
    """The items named by ``ids`` (e.g. a split's ``trainA``), with the same transform/metadata."""
    return SegmentationSubset(dataset, ids)


def color_map(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (bit-interleaved class index), extended to ``n`` colours."""
    colors = []
    for c in range(n):
        r = g = b = 0
        for shift in range(8):
            r |= ((c >> 0) & 1) << (7 - shift)
            g |= ((c >> 1) & 1) << (7 - shift)
            b |= ((c >> 2) & 1) << (7 - shift)
            c >>= 3
        colors.append((r, g, b))
    return colors


def make_lut(mapping: dict[int, int]) -> np.ndarray:
    """A 256-entry raw-value → train-label table; raw values not in ``mapping`` map to -1
    (invalid, reported by ``read_mask``)."""
    lut = np.full(256, -1, dtype=np.int16)
    for raw, label in mapping.items():
        lut[raw] = label
    return lut


WIDE_IMAGE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` to uint8 ``(H, W, 3)`` RGB, or raise DatasetError naming the file."""
    try:
        with Image.open(path) as im:
            if im.mode in WIDE_IMAGE_MODES:
                # 16/32-bit or float pixels: converting would clip them to 255 without a word
                raise DatasetError(
                    f"image {path} has mode {im.mode}: expected an 8-bit RGB or grayscale image"
                )
            return np.array(im.convert("RGB"))  # a writable copy: torch.from_numpy warns otherwise
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"missing image file: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot decode image file {path}: {e}") from None


def read_mask(
    path: str | os.PathLike, lut: np.ndarray, num_classes: int, image_path: str | os.PathLike
) -> np.ndarray:
    """Decode a single-channel label PNG and map it through ``lut`` to int64 ``(H, W)``.

    Raises DatasetError naming the file if it is missing, corrupt, not single-channel, or holds a
    value that maps to neither a class in ``[0, num_classes)`` nor IGNORE_INDEX.
    """
    try:
        with Image.open(path) as im:
            mode = im.mode
            raw = np.asarray(im) if mode in ("L", "P", "I", "I;16", "1") else None
    except FileNotFoundError:
        raise DatasetError(f"missing mask file {path} for image {image_path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot decode mask file {path}: {e}") from None
    if raw is None:
        raise DatasetError(
            f"mask {path} has mode {mode}: expected a single-channel PNG of class indices "
            "(grayscale or palette), not a colour image"
        )
    if raw.dtype != np.uint8:
        # 16/32-bit masks: anything above 255 is out of every table; report it like other values.
        wide = raw.astype(np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > 255):
            bad = np.unique(wide[(wide < 0) | (wide > 255)])
            raise DatasetError(_bad_labels_message(path, bad, num_classes))
        raw = wide.astype(np.uint8)
    mapped = lut[raw]
    invalid = (mapped < 0) | ((mapped >= num_classes) & (mapped != IGNORE_INDEX))
    if invalid.any():
        raise DatasetError(_bad_labels_message(path, np.unique(raw[invalid]), num_classes))
    return mapped.astype(np.int64)


def _bad_labels_message(path: str | os.PathLike, bad: np.ndarray, num_classes: int) -> str:
    shown = ", ".join(str(int(v)) for v in bad[:10]) + (" …" if len(bad) > 10 else "")
    return (
        f"mask {path} has label value(s) {shown} that are neither a class "
        f"(0..{num_classes - 1} after mapping) nor {IGNORE_INDEX} (ignore)"
    )


def check_same_size(
    image: np.ndarray, mask: np.ndarray, image_path: str | os.PathLike, mask_path: str | os.PathLike
) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise DatasetError(
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
            f"{image.shape[1]}x{image.shape[0]} (width x height)"
        )
