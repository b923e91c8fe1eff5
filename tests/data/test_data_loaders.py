"""Each real-format loader on a tiny tree written in the real on-disk format."""

import numpy as np
import pytest
import torch
from fixtures_data import (
    H,
    W,
    label_pattern,
    write_ade20k,
    write_cityscapes,
    write_folder,
    write_voc,
)

from fastadl.data import IGNORE_INDEX, DatasetError, build_dataset, subset
from fastadl.data.cityscapes import LABEL_TO_TRAIN


def check_item(ds, index, expected_mask=None, size=(H, W)):
    image, mask = ds[index]
    assert image.dtype == torch.float32 and image.shape == (3, *size)
    assert mask.dtype == torch.int64 and mask.shape == size
    valid = mask != IGNORE_INDEX
    assert ((mask[valid] >= 0) & (mask[valid] < ds.num_classes)).all()
    if expected_mask is not None:
        assert np.array_equal(mask.numpy(), expected_mask)


def check_metadata(ds, num_classes):
    assert ds.num_classes == num_classes == len(ds.class_names) == len(ds.palette)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in ds.palette)
    assert len(ds.ids) == len(ds) == len(set(ds.ids))


def test_cityscapes_maps_label_ids_to_official_train_ids(tmp_path):
    raw = write_cityscapes(tmp_path)
    ds = build_dataset("cityscapes", tmp_path, "train", crop_size=8, train=False)
    check_metadata(ds, 19)
    assert ds.class_names[0] == "road" and ds.class_names[13] == "car"
    assert ds.ids == sorted(raw)
    # The official table, spot-checked by hand: road, sidewalk, car, building, sky, unlabeled.
    for label_id, train_id in [(7, 0), (8, 1), (26, 13), (11, 2), (23, 10), (0, 255), (6, 255)]:
        assert LABEL_TO_TRAIN[label_id] == train_id
    first = raw["aachen/aachen_000000_000019"]  # bands of labelIds 0, 7, 8, 26
    expected = label_pattern([255, 0, 1, 13]).astype(np.int64)
    assert np.array_equal(np.vectorize(LABEL_TO_TRAIN.get)(first), expected)
    for i, item_id in enumerate(ds.ids):
        check_item(ds, i, np.vectorize(LABEL_TO_TRAIN.get)(raw[item_id]))


def test_voc_reads_palette_masks_and_split_lists(tmp_path):
    splits = write_voc(tmp_path / "VOCdevkit" / "VOC2012")
    for root in (tmp_path, tmp_path / "VOCdevkit" / "VOC2012"):  # either root works
        for split in ("train", "val"):
            ds = build_dataset("voc", root, split, crop_size=8, train=False)
            check_metadata(ds, 21)
            assert ds.ids == list(splits[split])
            for i, item_id in enumerate(ds.ids):
                check_item(ds, i, splits[split][item_id].astype(np.int64))
    assert ds.class_names[15] == "person" and ds.palette[1] == (128, 0, 0)


@pytest.mark.parametrize("nested", [True, False])
def test_ade20k_shifts_labels_and_ignores_other(tmp_path, nested):
    ade = tmp_path / "ADEChallengeData2016"
    write_ade20k(ade, "validation")
    ds = build_dataset("ade20k", tmp_path if nested else ade, "val", crop_size=8, train=False)
    check_metadata(ds, 150)
    assert ds.class_names[0] == "wall" and ds.class_names[149] == "flag"
    first = ds.ids.index("ADE_val_00000001")  # bands 0, 1, 150, 3
    check_item(ds, first, label_pattern([255, 0, 149, 2]).astype(np.int64))


def test_folder_without_split_lists_uses_all_images_for_both_splits(tmp_path):
    masks = write_folder(tmp_path)
    for split in ("train", "val"):
        ds = build_dataset("folder", tmp_path, split, crop_size=8, train=False)
        check_metadata(ds, 3)
        assert ds.class_names == ["sky", "grass", "cow"] and ds.ids == ["a", "b", "c"]
        for i, item_id in enumerate(ds.ids):
            check_item(ds, i, masks[item_id].astype(np.int64))


def test_folder_with_split_lists(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "train.txt").write_text("a\nc.png\n\n")  # extensions and blank lines tolerated
    (tmp_path / "val.txt").write_text("b\n")
    assert build_dataset("folder", tmp_path, "train", crop_size=8, train=False).ids == ["a", "c"]
    assert build_dataset("folder", tmp_path, "val", crop_size=8, train=False).ids == ["b"]


def test_folder_with_only_a_train_list_refuses_val(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "train.txt").write_text("a\n")
    with pytest.raises(DatasetError, match="val.txt"):
        build_dataset("folder", tmp_path, "val", crop_size=8, train=False)


def test_train_mode_crops_and_eval_mode_keeps_full_images(tmp_path):
    write_cityscapes(tmp_path)
    train = build_dataset("cityscapes", tmp_path, "train", crop_size=12, train=True)
    for i in range(len(train)):
        check_item(train, i, size=(12, 12))
    evaluation = build_dataset("cityscapes", tmp_path, "train", crop_size=12, train=False)
    a, b = evaluation[0], evaluation[0]
    assert a[0].shape == (3, H, W) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_subset_keeps_metadata_and_order(tmp_path):
    write_folder(tmp_path)
    ds = build_dataset("folder", tmp_path, "train", crop_size=8, train=False)
    sub = subset(ds, ["c", "a"])
    assert len(sub) == 2 and sub.ids == ["c", "a"] and sub.class_names == ds.class_names
    assert torch.equal(sub[0][1], ds[2][1])
    with pytest.raises(DatasetError, match="not in the dataset"):
        subset(ds, ["a", "zzz"])


def test_items_work_in_a_dataloader_with_workers(tmp_path):
    write_cityscapes(tmp_path)
    ds = build_dataset("cityscapes", tmp_path, "train", crop_size=8, train=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    images, masks = next(iter(loader))
    assert images.shape == (3, 3, 8, 8) and masks.shape == (3, 8, 8)
