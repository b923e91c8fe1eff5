"""Bad inputs a user can cause raise DatasetError (a ValueError) naming the file or flag."""

import re

import numpy as np
import pytest
from fixtures_data import (
    label_pattern,
    rgb,
    save,
    write_ade20k,
    write_cityscapes,
    write_folder,
    write_voc,
)

from fastadl.data import DatasetError, build_dataset


def build(name, root, split="train"):
    return build_dataset(name, root, split, crop_size=8, train=False)


def raises_naming(path, match=""):
    """pytest.raises(DatasetError) whose message names ``path`` (and matches ``match``)."""
    return pytest.raises(DatasetError, match=f"(?s)(?=.*{re.escape(str(path))}).*{match}")


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="synthetic, cityscapes, voc, ade20k, folder"):
        build("imagenet", None)


def test_unknown_split():
    with pytest.raises(ValueError, match="train, val"):
        build_dataset("synthetic", None, "test", crop_size=8, train=False)


@pytest.mark.parametrize("name", ["cityscapes", "voc", "ade20k", "folder"])
def test_missing_root_names_the_flag_and_layout(name):
    with pytest.raises(DatasetError, match=r"(?s)--data-root.*<root>/"):
        build(name, None)


def test_root_that_is_not_a_directory(tmp_path):
    with raises_naming(tmp_path / "nope", "not a directory"):
        build("cityscapes", tmp_path / "nope")


def test_root_with_wrong_layout_names_the_missing_directory(tmp_path):
    with raises_naming(tmp_path / "leftImg8bit" / "train", "missing directory"):
        build("cityscapes", tmp_path)


def test_empty_dataset(tmp_path):
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    (tmp_path / "gtFine" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        build("cityscapes", tmp_path)


def test_image_without_mask_is_an_error_not_a_skip(tmp_path):
    write_cityscapes(tmp_path)
    mask = tmp_path / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelIds.png"
    mask.unlink()
    with raises_naming(mask, "missing mask"):
        build("cityscapes", tmp_path)


def test_mask_removed_after_indexing(tmp_path):
    write_folder(tmp_path)
    ds = build("folder", tmp_path)
    (tmp_path / "masks" / "b.png").unlink()
    with raises_naming(tmp_path / "masks" / "b.png", "missing mask"):
        ds[1]


def test_voc_list_naming_a_missing_image(tmp_path):
    write_voc(tmp_path)
    (tmp_path / "JPEGImages" / "2007_000039.jpg").unlink()
    with raises_naming(tmp_path / "JPEGImages" / "2007_000039.jpg", "missing image"):
        build("voc", tmp_path)


def test_missing_split_list(tmp_path):
    write_voc(tmp_path)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with raises_naming(tmp_path / "ImageSets" / "Segmentation" / "val.txt"):
        build("voc", tmp_path, "val")


@pytest.mark.parametrize(
    "content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40]
)
def test_corrupt_image_names_the_file(tmp_path, content):
    write_folder(tmp_path)
    bad = tmp_path / "images" / "a.png"
    bad.write_bytes(content)
    ds = build("folder", tmp_path)
    with raises_naming(bad, "cannot decode image"):
        ds[0]


def test_truncated_jpeg_names_the_file(tmp_path):
    write_ade20k(tmp_path, "training")
    bad = tmp_path / "images" / "training" / "ADE_train_00000002.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    ds = build("ade20k", tmp_path)
    ds[0]  # the other item is fine
    with raises_naming(bad, "cannot decode image"):
        ds[1]


def test_corrupt_mask_names_the_file(tmp_path):
    write_folder(tmp_path)
    bad = tmp_path / "masks" / "c.png"
    bad.write_bytes(b"garbage")
    with raises_naming(bad, "cannot decode mask"):
        build("folder", tmp_path)[2]


def test_mask_size_differs_from_image(tmp_path):
    write_folder(tmp_path)
    save(tmp_path / "masks" / "a.png", np.zeros((16, 20), dtype=np.uint8))
    with raises_naming(tmp_path / "masks" / "a.png", "20x16 but its image"):
        build("folder", tmp_path)[0]


def test_colour_mask_is_rejected(tmp_path):
    write_folder(tmp_path)
    save(tmp_path / "masks" / "a.png", rgb(3))
    with raises_naming(tmp_path / "masks" / "a.png", "mode RGB"):
        build("folder", tmp_path)[0]


@pytest.mark.parametrize(
    "dataset, writer, mask_rel, bad_values",
    [
        ("cityscapes", write_cityscapes, "gtFine/train/aachen/aachen_000000_000019", [7, 40]),
        ("voc", write_voc, "SegmentationClass/2007_000032", [0, 21]),
        ("ade20k", write_ade20k, "annotations/training/ADE_train_00000001", [1, 151]),
        ("folder", write_folder, "masks/a", [0, 3]),
        ("folder", write_folder, "masks/b", [1, 300]),  # 16-bit mask
    ],
)
def test_label_outside_classes_and_ignore_names_the_file(
    tmp_path, dataset, writer, mask_rel, bad_values
):
    writer(tmp_path)
    suffix = "_gtFine_labelIds.png" if dataset == "cityscapes" else ".png"
    bad = tmp_path / f"{mask_rel}{suffix}"
    save(bad, label_pattern(bad_values))
    ds = build(dataset, tmp_path)
    index = next(i for i, p in enumerate(ds.mask_paths) if p == bad)
    with raises_naming(bad, f"label value.*{bad_values[-1]}"):
        ds[index]


def test_folder_without_classes_file(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "classes.txt").unlink()
    with raises_naming(tmp_path / "classes.txt"):
        build("folder", tmp_path)


def test_folder_split_list_naming_unknown_image(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "train.txt").write_text("a\nmissing_one\n")
    (tmp_path / "val.txt").write_text("b\n")
    with raises_naming(tmp_path / "train.txt", "missing_one"):
        build("folder", tmp_path)


def test_folder_two_images_with_the_same_name(tmp_path):
    write_folder(tmp_path)
    save(tmp_path / "images" / "a.jpg", rgb(9))  # a.png exists too
    with pytest.raises(DatasetError, match="share the name 'a'"):
        build("folder", tmp_path)
