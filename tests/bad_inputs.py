"""Generated malformed inputs for the bad-input sweep (tests/test_bad_inputs.py and
scripts/bad_input_sweep.py): datasets of every format, genotype and config JSON, checkpoints,
CLI flags. Each case is a command line plus what its one error line must name.

``make_cases(root)`` writes every case's files under ``root``; ``run_case`` runs one in-process
(``main(argv)``) and judges it: non-zero exit, one ``error:`` line naming the file, field or
flag (a dataset-layout hint may follow on indented lines), no traceback, and a run directory
that is absent, resumable, or (for a refused resume) exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
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

from fastadl import evaluate, predict, search, train
from fastadl.genotype import PAPER_GENOTYPE

COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "search": search.main,
    "train": train.main,
    "evaluate": evaluate.main,
    "predict": predict.main,
}
# One step of 2 images and a validation: every image of a 2-train / 1-val dataset is read.
TRAIN_RUN = [
    "--model", "tiny", "--genotype", "paper:3", "--crop-size", "16", "--batch-size", "2",
    "--epochs", "1", "--val-batch-size", "1", "--workers", "0", "--threads", "0",
    "--device", "cpu", "--no-progress",
]  # fmt: skip
SEARCH_RUN = [
    "--layers", "1", "--filter-multiplier", "1", "--block-multiplier", "1", "--crop-size", "16",
    "--batch-size", "1", "--epochs", "1", "--arch-start-epoch", "0", "--val-batch-size", "1",
    "--backend", "reference", "--workers", "0", "--threads", "0", "--device", "cpu",
    "--no-progress",
]  # fmt: skip
SYNTH = ["--num-images", "4", "--image-size", "16", "--val-images", "1"]


@dataclass
class Case:
    name: str
    group: str  # dataset, genotype, config, checkpoint, flags
    command: str
    argv: list[str]
    names: tuple[str, ...]  # what the error line must contain
    run_dir: Path | None = None  # the run directory the command writes into or resumes
    resume: bool = False  # the run directory existed before: it must be left unchanged


@dataclass
class Outcome:
    case: Case
    code: int
    err: str
    traceback: bool
    clear: bool
    run_dir_ok: bool
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- datasets
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


# ---------------------------------------------------------------------------- genotypes
def _genotype_variants() -> dict[str, tuple[object, str]]:
    """Name → (the genotype.json content, the field the error must name)."""
    good = PAPER_GENOTYPE.to_dict()

    def with_(**changes):
        return {**good, **changes}

    cell = [list(p) for p in good["cell"]]
    return {
        "not-an-object": ([1, 2, 3], "JSON object"),
        "missing-cell": ({k: v for k, v in good.items() if k != "cell"}, "cell"),
        "missing-path": ({k: v for k, v in good.items() if k != "path"}, "path"),
        "unknown-field": (with_(colour="red"), "colour"),
        "cell-a-string": (with_(cell="sep_conv_3x3"), "cell"),
        "cell-too-short": (with_(cell=cell[:6]), "cell"),
        "cell-too-long": (with_(cell=cell + cell[:2]), "cell"),
        "unknown-op": (with_(cell=[["conv_7x7", 0], *cell[1:]]), "conv_7x7"),
        "op-none": (with_(cell=[["none", 0], *cell[1:]]), "none"),
        "input-out-of-range": (with_(cell=[cell[0], ["sep_conv_3x3", 2], *cell[2:]]), "cell[1]"),
        "negative-input": (with_(cell=[["sep_conv_3x3", -1], *cell[1:]]), "cell[0]"),
        "input-a-string": (with_(cell=[["sep_conv_3x3", "zero"], *cell[1:]]), "cell"),
        "pair-of-three": (with_(cell=[["sep_conv_3x3", 0, 1], *cell[1:]]), "cell"),
        "path-too-short": (with_(path=good["path"][:-1]), "path"),
        "path-level-4": (with_(path=[0, 1, 2, 3, 4, *good["path"][5:]]), "path"),
        "path-negative": (with_(path=[-1, *good["path"][1:]]), "path"),
        "path-jumps": (with_(path=[0, 2, *good["path"][2:]]), "path"),
        "path-floats": (with_(path=[float(v) + 0.5 for v in good["path"]]), "path"),
        "layers-mismatch": (with_(layers=11), "layers"),
        "layers-too-few": (with_(path=[0, 1], layers=2), "at least 3"),
        "blocks-mismatch": (with_(block_multiplier=4), "2·B"),
        "filter-zero": (with_(filter_multiplier=0), "filter_multiplier"),
        "filter-a-string": (with_(filter_multiplier="eight"), "filter_multiplier"),
    }


def genotype_cases(base: Path) -> list[Case]:
    cases = []
    for name, (content, field_name) in _genotype_variants().items():
        path = base / "genotypes" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
        run = base / "genotypes" / f"run-{name}"
        argv = [*TRAIN_RUN, *SYNTH, "--genotype", str(path), "--out", str(run)]
        cases.append(
            Case(f"genotype/{name}", "genotype", "train", argv, (str(path), field_name), run)
        )
    raw = {"not-json": "{ not json", "empty": "", "not-utf8": b"\xff\xfe{}"}
    for name, text in raw.items():
        path = base / "genotypes" / f"{name}.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        run = base / "genotypes" / f"run-{name}"
        argv = [*TRAIN_RUN, *SYNTH, "--genotype", str(path), "--out", str(run)]
        cases.append(Case(f"genotype/{name}", "genotype", "train", argv, (str(path),), run))
    empty_dir = base / "genotypes" / "search-run-without-genotype"
    empty_dir.mkdir()
    specs = {"dir-without-genotype": str(empty_dir), "missing-file": str(base / "nope.json"),
             "paper-2": "paper:2", "paper-13": "paper:13", "paper-x": "paper:x"}  # fmt: skip
    for name, spec in specs.items():
        run = base / "genotypes" / f"run-{name}"
        argv = [*TRAIN_RUN, *SYNTH, "--genotype", spec, "--out", str(run)]
        cases.append(Case(f"genotype/{name}", "genotype", "train", argv, (spec,), run))
    return cases


# ---------------------------------------------------------------------------- configs
CONFIG_VARIANTS: dict[str, tuple[dict, str]] = {
    # name → (changes to a valid config.json, the field the error must name)
    "unknown-field": ({"colour": "red"}, "colour"),
    "layers-a-string": ({"layers": "two"}, "layers"),
    "epochs-a-float": ({"epochs": 1.5}, "epochs"),
    "batch-size-null": ({"batch_size": None}, "batch_size"),
    "amp-a-number": ({"amp": 3}, "amp"),
    "compile-a-string": ({"compile": "yes"}, "compile"),
    "data-root-a-number": ({"data_root": 5}, "data_root"),
    "seed-a-bool": ({"seed": True}, "seed"),
    "lr-a-list": ({"grad_clip": [5]}, "grad_clip"),
    "batch-size-zero": ({"batch_size": 0}, "batch_size"),
    "workers-negative": ({"workers": -1}, "workers"),
    "accumulate-not-dividing": ({"accumulate": 3}, "accumulate"),
    "amp-fp8": ({"amp": "fp8"}, "amp"),
    "data-mnist": ({"data": "mnist"}, "data"),
    "scales-crossed": ({"scale_min": 2.0, "scale_max": 1.0}, "scale_min"),
    "checkpoint-minutes-negative": ({"checkpoint_minutes": -1.0}, "checkpoint_minutes"),
    "keep-negative": ({"keep_checkpoints": -2}, "keep_checkpoints"),
}
SEARCH_ONLY = {
    "backend-cuda": ({"backend": "cuda"}, "backend"),
    "arch-start-after-end": ({"arch_start_epoch": 99}, "arch_start_epoch"),
    "layers-zero": ({"layers": 0}, "layers"),
}
TRAIN_ONLY = {
    "model-xl": ({"model": "XL"}, "model"),
    "drop-path-one": ({"drop_path_prob": 1.0}, "drop_path_prob"),
    "val-every-zero": ({"val_every": 0}, "val_every"),
}


def _snapshot(run: Path) -> dict[str, str]:
    if not run.exists():
        return {}
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


def config_cases(base: Path, seeds: dict[str, Path]) -> list[Case]:
    cases = []
    for command in ("search", "train"):
        extra = SEARCH_ONLY if command == "search" else TRAIN_ONLY
        for name, (changes, field_name) in {**CONFIG_VARIANTS, **extra}.items():
            run = base / "configs" / command / name
            shutil.copytree(seeds[command], run)
            cfg = json.loads((run / "config.json").read_text())
            (run / "config.json").write_text(json.dumps({**cfg, **changes}))
            source = str(run / "config.json")
            argv = ["--resume", str(run), "--no-progress"]
            case = Case(
                f"config/{command}/{name}", "config", command, argv, (source, field_name), run, True
            )
            cases.append(case)
        for name, text in {"not-json": "{", "an-array": "[]", "empty": ""}.items():
            run = base / "configs" / command / name
            shutil.copytree(seeds[command], run)
            (run / "config.json").write_text(text)
            argv = ["--resume", str(run), "--no-progress"]
            cases.append(
                Case(
                    f"config/{command}/{name}",
                    "config",
                    command,
                    argv,
                    (str(run / "config.json"),),
                    run,
                    True,
                )
            )
        run = base / "configs" / command / "missing"
        shutil.copytree(seeds[command], run)
        (run / "config.json").unlink()
        argv = ["--resume", str(run), "--no-progress"]
        cases.append(
            Case(
                f"config/{command}/missing",
                "config",
                command,
                argv,
                (str(run / "config.json"),),
                run,
                True,
            )
        )
        # the other loop's run directory
        other = seeds["train" if command == "search" else "search"]
        run = base / "configs" / command / "other-loops-run"
        shutil.copytree(other, run)
        argv = ["--resume", str(run), "--no-progress"]
        cases.append(
            Case(
                f"config/{command}/other-loops-run",
                "config",
                command,
                argv,
                (str(run / "config.json"),),
                run,
                True,
            )
        )
    return cases


# ---------------------------------------------------------------------------- checkpoints
def _latest(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


def checkpoint_cases(base: Path, seeds: dict[str, Path]) -> list[Case]:
    import torch

    def truncate(p):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    def other_network(command):
        def breaks(p):
            cfg_path = p.parent.parent / "config.json"
            cfg = json.loads(cfg_path.read_text())
            cfg.update({"layers": 2} if command == "search" else {"model": "S"})
            cfg_path.write_text(json.dumps(cfg))

        return breaks

    def drop(key):
        def breaks(p):
            state = torch.load(p, weights_only=True)
            del state[key]
            torch.save(state, p)

        return breaks

    def not_plain(p):
        torch.save({"model": torch.nn.Linear(2, 2)}, p)  # a pickled module: refused unread

    defects = {
        "truncated": truncate,
        "empty": lambda p: p.write_bytes(b""),
        "random-bytes": lambda p: p.write_bytes(bytes(range(256)) * 64),
        "json-not-a-checkpoint": lambda p: p.write_text('{"step": 3}'),
        "a-list": lambda p: torch.save([1, 2, 3], p),
        "pickled-code": not_plain,
        "latest-names-missing-file": lambda p: p.unlink(),
        "latest-pointer-garbage": lambda p: (p.parent / "latest").write_text("../../etc/passwd\n"),
        "no-rng": drop("rng"),
        "no-model": drop("model"),
    }
    cases = []
    for command in ("search", "train"):
        all_defects = {**defects, "another-network": other_network(command)}
        all_defects["optimizer-missing"] = drop("w_opt" if command == "search" else "optimizer")
        for name, breaks in all_defects.items():
            run = base / "checkpoints" / command / name
            shutil.copytree(seeds[command], run)
            target = _latest(run)
            breaks(target)
            argv = ["--resume", str(run), "--no-progress", "--epochs", "3"]
            names = (str(run / "checkpoints"),)
            cases.append(
                Case(f"checkpoint/{command}/{name}", "checkpoint", command, argv, names, run, True)
            )
    # evaluate / predict rebuild the network from a checkpoint alone
    for name, breaks in {**defects, "search-checkpoint": None}.items():
        if name in ("latest-names-missing-file", "latest-pointer-garbage", "no-rng"):
            continue
        run = base / "checkpoints" / "evaluate" / name
        shutil.copytree(seeds["search" if breaks is None else "train"], run)
        target = _latest(run)
        if breaks is not None:
            breaks(target)
        command = "predict" if name in ("truncated", "a-list") else "evaluate"
        image = base / "checkpoints" / "image.png"
        Image.fromarray(rgb(1)).save(image)
        argv = ["--checkpoint", str(target), "--workers", "0", "--device", "cpu"]
        if command == "predict":
            argv = [
                str(image),
                "--checkpoint",
                str(target),
                "--out",
                str(run / "pred"),
                "--device",
                "cpu",
            ]
        cases.append(
            Case(f"checkpoint/{command}/{name}", "checkpoint", command, argv, (str(target),))
        )
    return cases


# ---------------------------------------------------------------------------- CLI flags
FLAG_VARIANTS: list[tuple[list[str], str]] = [
    # (flags, the flag or field the error must name) for both loops
    (["--epochs", "0"], "epochs"),
    (["--epochs", "two"], "--epochs"),
    (["--batch-size", "0"], "batch_size"),
    (["--batch-size", "-3"], "batch_size"),
    (["--batch-size", "2.5"], "--batch-size"),
    (["--accumulate", "3", "--batch-size", "4"], "accumulate"),
    (["--accumulate", "0"], "accumulate"),
    (["--workers", "-1"], "workers"),
    (["--threads", "-1"], "threads"),
    (["--max-steps", "-1"], "max_steps"),
    (["--checkpoint-every", "-1"], "checkpoint_every"),
    (["--checkpoint-minutes", "-5"], "checkpoint_minutes"),
    (["--checkpoint-minutes", "soon"], "--checkpoint-minutes"),
    (["--keep-checkpoints", "-1"], "keep_checkpoints"),
    (["--val-images", "-1"], "val_images"),
    (["--num-images", "-1"], "num_images"),
    (["--crop-size", "0"], "crop_size"),
    (["--scale-min", "2", "--scale-max", "1"], "scale_min"),
    (["--scale-min", "0"], "scale_min"),
    (["--grad-clip", "-1"], "grad_clip"),
    (["--amp", "fp8"], "--amp"),
    (["--data", "mnist"], "--data"),
    (["--preset", "huge"], "--preset"),
    (["--device", "bogus"], "--device"),
    (["--device", "cuda"], "--device"),
    (["--device", "cuda:7"], "--device"),
    (["--no-such-flag"], "--no-such-flag"),
    (["--seed"], "--seed"),
    (["--compile", "yes"], "yes"),
    (["--data", "cityscapes"], "--data-root"),
    (["--num-images", "1"], "1"),
]
SEARCH_FLAGS = [
    (["--layers", "0"], "layers"),
    (["--backend", "cuda"], "--backend"),
    (["--arch-start-epoch", "99"], "arch_start_epoch"),
    (["--w-lr", "-1"], "w_lr"),
    (["--filter-multiplier", "x"], "--filter-multiplier"),
]
TRAIN_FLAGS = [
    (["--model", "XL"], "--model"),
    (["--drop-path-prob", "1.5"], "drop_path_prob"),
    (["--lr", "0"], "lr"),
    (["--val-every", "0"], "val_every"),
    (["--genotype", ""], "genotype"),
]


def flag_cases(base: Path, seeds: dict[str, Path]) -> list[Case]:
    cases = []
    for command in ("search", "train"):
        flags = SEARCH_RUN if command == "search" else TRAIN_RUN
        own = SEARCH_FLAGS if command == "search" else TRAIN_FLAGS
        for i, (extra, names) in enumerate([*FLAG_VARIANTS, *own]):
            run = base / "flags" / command / f"run{i}"
            argv = [*flags, *SYNTH, *extra, "--out", str(run)]
            cases.append(
                Case(f"flags/{command}/{' '.join(extra)}", "flags", command, argv, (names,), run)
            )
        missing = base / "flags" / command / "missing-run"
        cases.append(
            Case(
                f"flags/{command}/--resume missing",
                "flags",
                command,
                ["--resume", str(missing)],
                (str(missing),),
                missing,
            )
        )
        a_file = base / "flags" / command / "a-file"
        a_file.parent.mkdir(parents=True, exist_ok=True)
        a_file.write_text("x")
        cases.append(
            Case(
                f"flags/{command}/--out a file",
                "flags",
                command,
                [*flags, *SYNTH, "--out", str(a_file)],
                ("--out",),
                None,
            )
        )
        seed = seeds[command]
        cases.append(
            Case(
                f"flags/{command}/--out another config",
                "flags",
                command,
                [*flags, *SYNTH, "--epochs", "9", "--out", str(seed)],
                ("another config",),
                seed,
                True,
            )
        )
        cases.append(
            Case(
                f"flags/{command}/--resume with --out",
                "flags",
                command,
                ["--resume", str(seed), "--out", str(base / "x")],
                ("--out",),
                seed,
                True,
            )
        )
        cases.append(
            Case(
                f"flags/{command}/--resume with --preset",
                "flags",
                command,
                ["--resume", str(seed), "--preset", "tiny"],
                ("--preset",),
                seed,
                True,
            )
        )
        cases.append(
            Case(
                f"flags/{command}/--resume another network",
                "flags",
                command,
                [
                    "--resume",
                    str(seed),
                    "--no-progress",
                    "--epochs",
                    "3",
                    *(["--layers", "2"] if command == "search" else ["--model", "S"]),
                ],
                (str(seed / "checkpoints"),),
                seed,
                True,
            )
        )
    for extra, names in [(["--batch-size", "0"], "--batch-size"), (["--scales", "a,b"], "--scales"), (["--scales", "-1"], "--scales"), (["--split", "test"], "--split"), (["--limit", "-1"], "--limit"), (["--amp", "fp8"], "--amp"), (["--device", "bogus"], "--device"), ([], "--checkpoint")]:  # fmt: skip
        argv = (["--checkpoint", str(seeds["train"])] if names != "--checkpoint" else []) + extra
        cases.append(
            Case(
                f"flags/evaluate/{' '.join(extra) or 'no --checkpoint'}",
                "flags",
                "evaluate",
                argv,
                (names,),
            )
        )
    return cases


# ---------------------------------------------------------------------------- the sweep
def make_seeds(base: Path) -> dict[str, Path]:
    """One finished micro run per loop (for the config, checkpoint and flag cases)."""
    seeds = {"search": base / "seeds" / "search", "train": base / "seeds" / "train"}
    for command, run in seeds.items():
        flags = SEARCH_RUN if command == "search" else TRAIN_RUN
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert COMMANDS[command]([*flags, *SYNTH, "--out", str(run)]) == 0, command
    return seeds


def make_cases(base: Path) -> list[Case]:
    seeds = make_seeds(base)
    return [
        *dataset_cases(base),
        *genotype_cases(base),
        *config_cases(base, seeds),
        *checkpoint_cases(base, seeds),
        *flag_cases(base, seeds),
    ]


def _run_dir_ok(case: Case, before: dict[str, str]) -> bool:
    """Absent, or a run directory the loops can resume (config.json and latest load), or, for
    a refused resume, exactly as it was."""
    run = case.run_dir
    if run is None or not run.exists():
        return True
    if case.resume:
        return _snapshot(run) == before
    from fastadl.engine import config, train_config
    from fastadl.engine.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
    from fastadl.engine.config_base import ConfigError

    cls = config.CONFIG if case.command == "search" else train_config.CONFIG
    try:
        if (run / "config.json").exists():
            cls.from_dict(json.loads((run / "config.json").read_text()))
        if latest_checkpoint(run) is not None:
            load_checkpoint(run)
    except (ConfigError, CheckpointError, ValueError):
        return False
    return True


def run_case(case: Case) -> Outcome:
    before = _snapshot(case.run_dir) if case.resume and case.run_dir else {}
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = COMMANDS[case.command](case.argv)
    except BaseException as e:  # noqa: BLE001 - anything escaping main is a failure to report
        import traceback

        code = -1
        err.write("Traceback (most recent call last):\n" + "".join(traceback.format_exception(e)))
    text = err.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    problems = []
    if code in (0, -1):
        problems.append(f"exit status {code}")
    tb = "Traceback" in text
    first = lines[0] if lines else ""
    if not first.startswith("error: "):
        problems.append(f"first stderr line is {first[:120]!r}")
    if any(not line[:1].isspace() for line in lines[1:]):
        problems.append("more than one error line")
    missing = [n for n in case.names if n not in first]
    if missing:
        problems.append(f"error line does not name {missing}")
    ok_dir = _run_dir_ok(case, before)
    if not ok_dir:
        problems.append("the run directory is left unresumable or changed")
    clear = not problems and not tb
    return Outcome(case, code, text, tb, clear, ok_dir, problems)
