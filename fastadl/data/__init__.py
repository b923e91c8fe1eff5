"""Datasets for the search and retraining: synthetic (default), Cityscapes, VOC 2012, ADE20K and
a plain image folder, with their joint transforms and the persisted trainA/trainB split.

    ds = build_dataset("cityscapes", "/data/cityscapes", "train", crop_size=321, train=True)
    image, mask = ds[0]    # float32 (3, H, W) normalised, int64 (H, W) in [0, C) or 255
"""

from __future__ import annotations

import os

from fastadl.data.ade20k import ADE20K
from fastadl.data.base import (
    IGNORE_INDEX,
    DatasetError,
    SegmentationDataset,
    SegmentationSubset,
    subset,
)
from fastadl.data.cityscapes import Cityscapes
from fastadl.data.folder import ImageFolder
from fastadl.data.split import load_split, make_split, save_split
from fastadl.data.synthetic import SyntheticScenes
from fastadl.data.transforms import (
    MEAN,
    STD,
    PreResize,
    Resize,
    TrainTransform,
    denormalize,
    pad_collate,
)
from fastadl.data.voc import VOC

# name → class taking (root, split, transform); synthetic is built separately (no root).
_FILE_DATASETS = {"cityscapes": Cityscapes, "voc": VOC, "ade20k": ADE20K, "folder": ImageFolder}
DATASETS = ("synthetic", *_FILE_DATASETS)
SPLITS = ("train", "val")


def build_dataset(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    crop_size: int | tuple[int, int] | None,
    train: bool,
    seed: int = 0,
    scale_range: tuple[float, float] | None = None,
    flip: bool = True,
    resize: PreResize | None = None,
    **kwargs,
) -> SegmentationDataset:
    """The ``split`` ("train" or "val") of dataset ``name`` (one of DATASETS).

    train=True: random scale (``scale_range``, default per dataset: 0.5–2.0 for real data,
    0.75–1.25 for synthetic), random ``crop_size`` crop padded with 0 / 255, random horizontal
    flip. train=False: full images, no randomness (``crop_size`` is not used). ``resize``
    (None or identity: the files' size) resizes every image (bilinear) and mask (nearest)
    first: for training before the random scale and crop, for evaluation as the whole transform.
    ``seed`` fixes the synthetic scenes; ``root`` is ignored for synthetic. Extra keyword
    arguments go to the dataset (synthetic: ``image_size``, ``num_images``).
    Raises ValueError for an unknown name or split, DatasetError for a missing root or bad files.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if name == "synthetic":
        ds: SegmentationDataset = SyntheticScenes(split, seed=seed, **kwargs)
    else:
        if kwargs:
            raise TypeError(f"dataset {name!r} takes no options {sorted(kwargs)}")
        ds = _FILE_DATASETS[name](root, split)
    if resize is not None and resize.is_identity:
        resize = None
    if train:
        scales = scale_range or ds.default_scale_range
        ds.transform = TrainTransform(crop_size, scales, flip, resize)
    elif resize is not None:
        ds.transform = Resize(resize)
    return ds


__all__ = [
    "ADE20K",
    "DATASETS",
    "IGNORE_INDEX",
    "MEAN",
    "STD",
    "VOC",
    "Cityscapes",
    "DatasetError",
    "ImageFolder",
    "PreResize",
    "Resize",
    "SegmentationDataset",
    "SegmentationSubset",
    "SyntheticScenes",
    "TrainTransform",
    "build_dataset",
    "denormalize",
    "load_split",
    "make_split",
    "pad_collate",
    "save_split",
    "subset",
]
