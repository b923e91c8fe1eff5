"""The synthetic default dataset: deterministic by seed, every class present, colour-blind."""

import time

import numpy as np
import pytest
import torch

from fastadl.data import IGNORE_INDEX, SyntheticScenes, build_dataset


def test_items_follow_the_contract():
    ds = build_dataset("synthetic", None, "train", crop_size=64, train=False)
    assert len(ds) == 400 and ds.num_classes == 6 == len(ds.palette) == len(ds.class_names)
    assert len(build_dataset("synthetic", None, "val", crop_size=64, train=False)) == 100
    image, mask = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    assert mask.dtype == torch.int64 and mask.shape == (64, 64)
    assert ((mask >= 0) & (mask < 6)).all()


def test_deterministic_by_seed_and_index():
    a = SyntheticScenes("train", seed=3, num_images=5)
    b = SyntheticScenes("train", seed=3, num_images=50)
    for i in (0, 4):
        (ia, ma), (ib, mb) = a.load(i), b.load(i)
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
    assert a.ids == b.ids[:5]
    assert not np.array_equal(a.load(0)[0], SyntheticScenes("train", seed=4).load(0)[0])
    assert not np.array_equal(a.load(0)[0], SyntheticScenes("val", seed=3).load(0)[0])
    assert not np.array_equal(a.load(0)[0], a.load(1)[0])
    assert a.ids[0] != SyntheticScenes("train", seed=4).ids[0]  # a split can't cross seeds


def test_every_class_is_present_in_both_splits():
    for split in ("train", "val"):
        ds = SyntheticScenes(split, num_images=30)
        seen = set()
        for i in range(len(ds)):
            seen |= set(np.unique(ds.load(i)[1]).tolist())
        assert seen == set(range(6))


def test_colour_does_not_tell_the_class():
    ds = SyntheticScenes("train", num_images=200)
    sums, counts = np.zeros((6, 3)), np.zeros(6)
    for i in range(len(ds)):
        image, mask = ds.load(i)
        for c in range(6):
            sums[c] += image[mask == c].sum(0)
            counts[c] += (mask == c).sum()
    means = sums / counts[:, None]
    assert np.abs(means - 127.5).max() < 15, means  # every class: mid-grey on average


def test_image_size_is_configurable():
    ds = build_dataset("synthetic", None, "val", crop_size=None, train=False, image_size=96)
    assert ds[0][0].shape == (3, 96, 96)
    with pytest.raises(ValueError, match="image_size"):
        SyntheticScenes("train", image_size=8)


def test_train_transform_is_reproducible_under_manual_seed():
    ds = build_dataset("synthetic", None, "train", crop_size=48, train=True, num_images=4)
    torch.manual_seed(0)
    first = [ds[i] for i in range(4)]
    torch.manual_seed(0)
    second = [ds[i] for i in range(4)]
    for (x1, m1), (x2, m2) in zip(first, second, strict=True):
        assert x1.shape == (3, 48, 48) and torch.equal(x1, x2) and torch.equal(m1, m2)
    assert any((m == IGNORE_INDEX).any() or not torch.equal(m, m.flip(-1)) for _, m in first)


def test_generation_is_fast():
    ds = SyntheticScenes("train", num_images=50)
    start = time.perf_counter()
    for i in range(len(ds)):
        ds.load(i)
    per_image = (time.perf_counter() - start) / len(ds)
    assert per_image < 0.02  # about 1 ms on a laptop core; generous for slow CI machines
