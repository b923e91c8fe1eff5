"""The fixed pre-resize and the paper search preset's data (docs/METHOD.md §3): random
321×321 crops of half-resolution Cityscapes images, validation at half resolution."""

import numpy as np
import pytest
import torch
from fixtures_data import write_cityscapes

from fastadl.data import PreResize, build_dataset, files
from fastadl.data.base import make_lut
from fastadl.data.cityscapes import LABEL_TO_TRAIN
from fastadl.data.transforms import to_tensors
from fastadl.runtime.config import ConfigError
from fastadl.runtime.loading import build_datasets
from fastadl.search import config
from fastadl.train import config as train_config

# Full-resolution fixture: 642×1000 → 321×500 at half resolution, so a 321 crop's top is 0
# and its left is one of 180 positions; a crop of the full-resolution image (or of a rescaled
# one) matches none of them.
FULL = (642, 1000)
HALF = (321, 500)
CROP = 321


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    """A Cityscapes tree with one train and one val frame of random pixels and random labelIds
    (every labelId 0..33: some map to trainIds, the others to 255). Returns (root, raw masks)."""
    root = tmp_path_factory.mktemp("cityscapes")
    rng = np.random.default_rng(0)
    raw = {
        split: rng.integers(0, 34, FULL, dtype=np.uint8) for split in ("train", "val")
    }  # fmt: skip
    write_cityscapes(root, "train", {"aachen/aachen_000000_000019": raw["train"]})
    write_cityscapes(root, "val", {"frankfurt/frankfurt_000000_000294": raw["val"]})
    return root, raw


def half_resolution(root, split: str, raw: np.ndarray):
    """The oracle: at factor 0.5, bilinear resampling on the pixel-centre grid is the mean of
    each 2×2 block and nearest (nearest-exact) picks the block's bottom-right pixel."""
    from PIL import Image

    files = sorted((root / "leftImg8bit" / split).glob("*/*.png"))
    image = np.array(Image.open(files[0]).convert("RGB"))
    labels = make_lut(LABEL_TO_TRAIN)[raw].astype(np.int64)
    x, _ = to_tensors(image, labels)
    half = x.view(3, HALF[0], 2, HALF[1], 2).mean(dim=(2, 4))
    return half, torch.from_numpy(labels[1::2, 1::2].copy())


def paper_datasets(root):
    cfg = config.resolve("paper", {"data_root": str(root), "workers": 0})
    return cfg, *build_datasets(cfg)


def test_paper_preset_is_the_papers_data_setting():
    cfg = config.PRESETS["paper"]
    assert (cfg.data, cfg.resize_factor, cfg.crop_size, cfg.batch_size) == (
        "cityscapes",
        0.5,
        321,
        2,
    )
    assert (cfg.scale_min, cfg.scale_max) == (1.0, 1.0)  # no scale jitter (decision)
    assert cfg.val_resize


def test_paper_training_crops_come_from_half_resolution_images(cityscapes, monkeypatch):
    root, raw = cityscapes
    _, train, _ = paper_datasets(root)
    half, half_labels = half_resolution(root, "train", raw["train"])
    decodes = []
    read_image = files.read_image
    monkeypatch.setattr(files, "read_image", lambda path: decodes.append(path) or read_image(path))
    seen_lefts, seen_flips = set(), set()
    for seed in range(6):
        torch.manual_seed(seed)
        image, mask = train[0]
        assert image.shape == (3, CROP, CROP) and mask.shape == (CROP, CROP)
        # Where the crop's first mask row sits in the (possibly mirrored) half-res mask: random
        # labels make that position unique; then the whole window must match.
        lefts = [
            (flip, left)
            for flip in (False, True)
            for left in range(HALF[1] - CROP + 1)
            if torch.equal(
                mask[0], (half_labels.flip(-1) if flip else half_labels)[0, left : left + CROP]
            )
        ]
        assert len(lefts) == 1, f"seed {seed}: the crop is no window of the half-res image"
        flip, left = lefts[0]
        ref, ref_labels = (half.flip(-1), half_labels.flip(-1)) if flip else (half, half_labels)
        assert torch.equal(mask, ref_labels[:, left : left + CROP])
        torch.testing.assert_close(image, ref[:, :, left : left + CROP])
        seen_lefts.add(left)
        seen_flips.add(flip)
    assert len(seen_lefts) > 1  # the crop is random
    assert len(decodes) == 6  # one decode per item: the resize does not read the file again
    # Labels are unchanged by the resize: trainIds of the raw labelIds, nothing blended.
    trainids = set(LABEL_TO_TRAIN.values())
    assert set(mask.unique().tolist()) <= trainids


def test_paper_validation_runs_at_half_resolution(cityscapes):
    root, raw = cityscapes
    _, _, val = paper_datasets(root)
    half, half_labels = half_resolution(root, "val", raw["val"])
    image, mask = val[0]
    assert tuple(mask.shape) == HALF
    assert torch.equal(mask, half_labels)
    torch.testing.assert_close(image, half)


def test_val_resize_off_validates_at_the_files_resolution(cityscapes):
    root, _ = cityscapes
    cfg = config.resolve("paper", {"data_root": str(root), "val_resize": False})
    _, val = build_datasets(cfg)
    assert tuple(val[0][1].shape) == FULL


def test_image_height_and_width_resize_any_dataset():
    fixed = build_dataset(
        "synthetic", None, "val", crop_size=None, train=False, resize=PreResize(height=40, width=24)
    )
    assert tuple(fixed[0][1].shape) == (40, 24)
    one_side = PreResize(width=32)  # the other side keeps the aspect ratio
    assert one_side.size(1024, 2048) == (16, 32) and PreResize(height=32).size(10, 25) == (32, 80)
    train = build_dataset(
        "synthetic", None, "train", crop_size=16, train=True, resize=PreResize(factor=0.25)
    )
    assert train.transform.resize == PreResize(factor=0.25)
    assert tuple(train[0][1].shape) == (16, 16)


def test_without_resize_flags_nothing_changes():
    for presets in (config.PRESETS, train_config.PRESETS):
        for name, cfg in presets.items():
            if name == "paper":
                continue
            assert (cfg.resize_factor, cfg.image_height, cfg.image_width) == (1.0, 0, 0), name
    train, val = build_datasets(config.PRESETS["tiny"])
    assert train.transform.resize is None and val.transform is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"resize_factor": 0.5, "image_height": 100}, "either resize_factor"),
        ({"resize_factor": 0.0}, "resize_factor must be > 0"),
        ({"image_width": -3}, "image_width must be >= 0"),
    ],
)
def test_bad_resize_settings_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.resolve("tiny", overrides)
