"""Malformed genotype JSON, config JSON, checkpoints and CLI flags for the bad-input sweep
(tests/bad_inputs.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bad_input_case import SYNTH, TRAIN_RUN, Case
from fixtures_data import rgb
from PIL import Image

from fastadl.space.genotype import PAPER_GENOTYPE


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
