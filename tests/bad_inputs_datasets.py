"""Malformed datasets for the bad-input sweep (tests/bad_inputs.py): every format × split ×
image and mask defect, wrong layouts, missing roots."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bad_input_case import SEARCH_RUN, TRAIN_RUN, Case
from fixtures_data import (
    label_pattern,
    rgb,
    save,
    voc_palette,
    write_ade20k,
    write_cityscapes,
    write_folder,
    write_voc,
)
from PIL import Image


def _write_format(fmt: str, root: Path) -> tuple[Path, dict[str, list[tuple[Path, Path]]]]:
    """A 2-train / 1-val dataset of format ``fmt``; returns (data root, split → [(img, mask)])."""
    if fmt == "cityscapes":
        write_cityscapes(
            root, "train", {"c/c_0_0": label_pattern([7, 8]), "c/c_1_0": label_pattern([11])}
        )
        write_cityscapes(root, "val", {"c/c_2_0": label_pattern([7, 26])})

        def pair(split, stem):
            return (
                root / "leftImg8bit" / split / "c" / f"{stem}_leftImg8bit.png",
                root / "gtFine" / split / "c" / f"{stem}_gtFine_labelIds.png",
            )

        return root, {
            "train": [pair("train", "c_0_0"), pair("train", "c_1_0")],
            "val": [pair("val", "c_2_0")],
        }
    if fmt == "voc":
        write_voc(
            root,
            {
                "train": {"a": label_pattern([0, 1]), "b": label_pattern([2, 255])},
                "val": {"c": label_pattern([0, 3])},
            },
        )
        p = {
            i: (root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png")
            for i in "abc"
        }
        return root, {"train": [p["a"], p["b"]], "val": [p["c"]]}
    if fmt == "ade20k":
        ade = root / "ADEChallengeData2016"
        write_ade20k(
            ade,
            "training",
            {"ADE_train_1": label_pattern([0, 1]), "ADE_train_2": label_pattern([3])},
        )
        write_ade20k(ade, "validation", {"ADE_val_1": label_pattern([5, 0])})

        def pair(split, stem):
            return (
                ade / "images" / split / f"{stem}.jpg",
                ade / "annotations" / split / f"{stem}.png",
            )

        return root, {
            "train": [pair("training", "ADE_train_1"), pair("training", "ADE_train_2")],
            "val": [pair("validation", "ADE_val_1")],
        }
    write_folder(
        root,
        masks={"a": label_pattern([0, 1]), "b": label_pattern([2, 255]), "c": label_pattern([1])},
    )
    (root / "train.txt").write_text("a\nb\n")
    (root / "val.txt").write_text("c\n")
    ext = {"a": ".png", "b": ".jpg", "c": ".png"}  # write_folder alternates extensions
    p = {i: (root / "images" / f"{i}{ext[i]}", root / "masks" / f"{i}.png") for i in "abc"}
    return root, {"train": [p["a"], p["b"]], "val": [p["c"]]}


BAD_LABEL = {"cityscapes": 40, "voc": 30, "ade20k": 200, "folder": 7}


def _rewrite_image(path: Path, array: np.ndarray) -> None:
    path.unlink()
    Image.fromarray(array).save(path)


def _file_defects(fmt: str, kind: str, suffix: str) -> dict[str, Callable[[Path], None]]:
    """Defect name → a function breaking an image (kind "image") or a mask file in place."""

    def directory(p):
        p.unlink()
        p.mkdir()

    common = {
        "missing": lambda p: p.unlink(),
        "empty": lambda p: p.write_bytes(b""),
        "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        "corrupt": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
        "text": lambda p: p.write_text("this is not an image\n"),
        "directory": directory,
    }
    if kind == "image":
        wrong = {"size-mismatch": lambda p: _rewrite_image(p, rgb(9, 16, 20))}
        if suffix == ".png":  # JPEG has no 16-bit mode
            wrong["16-bit"] = lambda p: _rewrite_image(p, np.full((16, 24), 40000, np.uint16))
        return {**common, **wrong}
    palette = voc_palette() if fmt == "voc" else None
    return {
        **common,
        "rgb-mode": lambda p: _rewrite_image(p, rgb(3)),
        "rgba-mode": lambda p: Image.fromarray(np.zeros((16, 24, 4), np.uint8)).save(p),
        "bad-label": lambda p: save(p, label_pattern([0, BAD_LABEL[fmt]]), palette),
        "16-bit-over-255": lambda p: Image.fromarray(np.full((16, 24), 300, np.uint16)).save(p),
        "size-mismatch": lambda p: save(p, label_pattern([0], 16, 20), palette),
    }


def _layout_defects(fmt: str, root: Path) -> dict[str, tuple[Callable[[], None], str]]:
    """Defect name → (break the tree, what the error must name)."""
    if fmt == "cityscapes":
        return {
            "no-gtFine": (
                lambda: shutil.rmtree(root / "gtFine" / "train"),
                str(root / "gtFine" / "train"),
            ),
            "no-images": (
                lambda: shutil.rmtree(root / "leftImg8bit" / "val"),
                str(root / "leftImg8bit" / "val"),
            ),
            "empty-split": (
                lambda: [p.unlink() for p in (root / "leftImg8bit" / "train").rglob("*.png")],
                "no images",
            ),
        }
    if fmt == "voc":
        seg = root / "ImageSets" / "Segmentation"
        return {
            "no-list": (lambda: (seg / "train.txt").unlink(), str(seg / "train.txt")),
            "list-names-missing-id": (lambda: (seg / "val.txt").write_text("c\nzzz\n"), "zzz.jpg"),
            "list-not-utf8": (
                lambda: (seg / "train.txt").write_bytes(b"a\n\xff\xfe\n"),
                str(seg / "train.txt"),
            ),
            "no-masks-dir": (
                lambda: shutil.rmtree(root / "SegmentationClass"),
                "SegmentationClass",
            ),
            "empty-list": (lambda: (seg / "train.txt").write_text(""), "no images"),
        }
    if fmt == "ade20k":
        ade = root / "ADEChallengeData2016"
        return {
            "no-annotations": (
                lambda: shutil.rmtree(ade / "annotations" / "training"),
                str(ade / "annotations" / "training"),
            ),
            "no-validation": (
                lambda: shutil.rmtree(ade / "images" / "validation"),
                str(ade / "images" / "validation"),
            ),
            "empty-split": (
                lambda: [p.unlink() for p in (ade / "images" / "training").glob("*.jpg")],
                "no images",
            ),
        }
    return {
        "no-classes": (lambda: (root / "classes.txt").unlink(), str(root / "classes.txt")),
        "empty-classes": (
            lambda: (root / "classes.txt").write_text("\n"),
            str(root / "classes.txt"),
        ),
        "too-many-classes": (
            lambda: (root / "classes.txt").write_text("c\n" * 300),
            str(root / "classes.txt"),
        ),
        "list-names-unknown": (
            lambda: (root / "train.txt").write_text("a\nnope\n"),
            str(root / "train.txt"),
        ),
        "no-val-list": (lambda: (root / "val.txt").unlink(), str(root / "val.txt")),
        "duplicate-stem": (lambda: Image.fromarray(rgb(5)).save(root / "images" / "a.jpg"), "'a'"),
        "no-masks-dir": (lambda: shutil.rmtree(root / "masks"), str(root / "masks")),
    }


def dataset_cases(base: Path) -> list[Case]:
    cases = []
    for fmt in ("cityscapes", "voc", "ade20k", "folder"):
        for kind in ("image", "mask"):
            for split in ("train", "val"):
                suffix = _write_format(fmt, base / f"{fmt}/probe")[1][split][-1][0].suffix
                for defect, breaks in _file_defects(fmt, kind, suffix).items():
                    if kind == "image" and defect == "missing" and fmt in ("cityscapes", "ade20k"):
                        continue  # images are found by listing the folder: no image, no item
                    name = f"{fmt}/{split}-{kind}-{defect}"
                    root, items = _write_format(fmt, base / name / "data")
                    target = items[split][-1][0 if kind == "image" else 1]
                    breaks(target)
                    names = str(target)
                    if fmt == "folder" and kind == "image" and defect in ("missing", "directory"):
                        names = str(root / f"{split}.txt")  # the list names an image not there
                    # the search reads the same files: a quarter of the cases go through it
                    command = "search" if defect in ("truncated", "size-mismatch") else "train"
                    flags = SEARCH_RUN if command == "search" else TRAIN_RUN
                    run = base / name / "run"
                    argv = [*flags, "--data", fmt, "--data-root", str(root), "--out", str(run)]
                    cases.append(Case(name, "dataset", command, argv, (names,), run))
        for defect in _layout_defects(fmt, Path("/unused")):
            name = f"{fmt}/layout-{defect}"
            root, _ = _write_format(fmt, base / name / "data")
            breaks, names = _layout_defects(fmt, root)[defect]
            breaks()
            run = base / name / "run"
            argv = [*TRAIN_RUN, "--data", fmt, "--data-root", str(root), "--out", str(run)]
            cases.append(Case(name, "dataset", "train", argv, (names,), run))
        missing = base / f"{fmt}/no-root"
        cases.append(
            Case(
                f"{fmt}/root-missing",
                "dataset",
                "train",
                [
                    *TRAIN_RUN,
                    "--data",
                    fmt,
                    "--data-root",
                    str(missing),
                    "--out",
                    str(base / f"{fmt}/r1"),
                ],
                (str(missing),),
                base / f"{fmt}/r1",
            )
        )
        cases.append(
            Case(
                f"{fmt}/no-data-root",
                "dataset",
                "train",
                [*TRAIN_RUN, "--data", fmt, "--out", str(base / f"{fmt}/r2")],
                ("--data-root",),
                base / f"{fmt}/r2",
            )
        )
    return cases
