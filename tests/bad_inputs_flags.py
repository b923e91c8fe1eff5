"""Bad command-line flags for the bad-input sweep (tests/bad_inputs.py): values out of range or
of the wrong type, unknown flags and choices, unavailable devices, run-directory conflicts."""

from __future__ import annotations

from pathlib import Path

from bad_input_case import SEARCH_RUN, SYNTH, TRAIN_RUN, Case

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
    (["--resize-factor", "0"], "resize_factor"),
    (["--resize-factor", "half"], "--resize-factor"),
    (["--resize-factor", "0.5", "--image-height", "100"], "resize_factor"),
    (["--image-width", "-2"], "image_width"),
]
SEARCH_FLAGS = [
    (["--layers", "0"], "layers"),
    (["--backend", "cuda"], "--backend"),
    (["--arch-start-epoch", "99"], "arch_start_epoch"),
    (["--w-lr", "-1"], "w_lr"),
    (["--filter-multiplier", "x"], "--filter-multiplier"),
    (["--val-bn", "mixed"], "--val-bn"),
]
TRAIN_FLAGS = [
    (["--model", "XL"], "--model"),
    (["--drop-path-prob", "1.5"], "drop_path_prob"),
    (["--lr", "0"], "lr"),
    (["--val-every", "0"], "val_every"),
    (["--genotype", ""], "genotype"),
    (["--aspp-dropout", "1"], "aspp_dropout"),
    (["--bn-momentum", "2"], "bn_momentum"),
    (["--backbone-bn-eps", "0"], "backbone_bn_eps"),
    (["--input-norm", "tf"], "--input-norm"),
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
