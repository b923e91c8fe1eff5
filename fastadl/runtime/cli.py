"""The command-line layer of the loops (search, train) and what every CLI shares.

``LoopCLI`` describes one loop's command; ``run_loop_cli`` is its whole ``main``: flags from
the config's fields (help, unit, choices and the chosen preset's real default in ``--help``),
the run directory (new, continued with ``--resume``, or continued because ``--out`` holds a
run of the same config, e.g. after a torchrun restart), and the exit status:

    0 done · 2 bad input (one ``error:`` line naming the file, field or flag) · 3 NaN/inf loss
    4 stopped by SIGTERM/SIGINT after a checkpoint · 130 a second Ctrl-C (stopped at once)

Kept free of heavy imports so ``--help`` stays fast and initialises no CUDA or Triton.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastadl.runtime.config import (
    ConfigError,
    apply_overrides,
    config_differences,
    field_types,
    resolve_preset,
)

# Errors a user can cause; reported as one line, never as a traceback from deep inside torch.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError)
EXIT_USER, EXIT_NONFINITE, EXIT_PREEMPTED, EXIT_INTERRUPTED = 2, 3, 4, 130


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one ``error:`` line (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USER, f"error: {message} (see {self.prog} --help)\n")


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of a command outside the loops (export, selfcheck, cost): defaults in --help."""
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def parse(parser: argparse.ArgumentParser, argv: list[str] | None):
    """``parser.parse_args(argv)``, or the exit status of --help / a bad flag (an int)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as e:  # --help, or a bad flag (already reported on one line)
        return int(e.code or 0)


def user_message(e: BaseException) -> str:
    """The one line to show for a user error. An error raised in a DataLoader worker arrives
    with the worker's traceback in its text: its last line is the original message."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    if "Traceback (most recent call last)" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+: ", "", last.strip())
    return text


def fail(message: str, code: int = EXIT_USER) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else str(value)


def add_config_flags(
    parser: argparse.ArgumentParser, config_cls: type, defaults, label: str, skip=frozenset()
):
    """One ``--field-name`` flag per config field (but those in ``skip``), its help from the
    field's ``option``.

    The parser default is None (= keep the preset's value); the help shows ``defaults``' value
    (the chosen preset's), with the unit and the choices.
    """
    group = parser.add_argument_group(
        f"config (defaults shown are {label}'s; --preset NAME --help shows another's)"
    )
    kinds = field_types(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        meta, kind = f.metadata, kinds[f.name]
        flag = "--" + f.name.replace("_", "-")
        text = meta.get("help", "")
        if meta.get("unit"):
            text += f", in {meta['unit']}"
        text = f"{text} (default: {_shown(getattr(defaults, f.name))})".replace("%", "%%")
        if kind is bool:
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        elif meta.get("choices"):
            group.add_argument(flag, dest=f.name, choices=meta["choices"], help=text)
        else:
            metavar = (meta.get("unit") or kind.__name__).upper() if kind is not str else None
            group.add_argument(flag, dest=f.name, type=kind, metavar=metavar, help=text)


def overrides_from(args: argparse.Namespace, config_cls: type) -> dict[str, Any]:
    """The config fields the user set on the command line."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


@dataclass(frozen=True)
class LoopCLI:
    """What differs between the search's and the training's command line."""

    prog: str  # "python -m fastadl.search"
    description: str  # the command module's docstring
    config: Any  # the config module: CONFIG (the dataclass), PRESETS, PRESET_NOTES, DEFAULT_PRESET
    run: Callable[..., Any]  # called as run(cfg, run_dir, resume=..., progress=...)
    product: str  # what the last line points at, inside the run directory

    @classmethod
    def of(cls, doc: str, config: Any, run: Callable[..., Any], product: str) -> LoopCLI:
        """From the command module's docstring, which starts with ``python -m fastadl.X``."""
        prog = re.match(r"``(.+?)``", doc.strip()).group(1)
        return cls(prog, doc.strip().replace("``", ""), config, run, product)

    @property
    def name(self) -> str:  # "search" | "train": names the run and its default directory
        return self.prog.rsplit(".", 1)[-1]

    def main(self, argv: list[str] | None = None) -> int:
        """The command's ``main(argv) -> exit status``."""
        return run_loop_cli(self, argv)


def _chosen_preset(spec: LoopCLI, argv: list[str]) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset")
    name = pre.parse_known_args(argv)[0].preset
    return name if name in spec.config.PRESETS else spec.config.DEFAULT_PRESET


def build_parser(spec: LoopCLI, argv: list[str] | None = None) -> argparse.ArgumentParser:
    argv = sys.argv[1:] if argv is None else argv
    usage = "%(prog)s [--preset NAME] [--out RUN_DIR | --resume RUN_DIR] [config flags ...]"
    epilog = (
        "exit status: 0 done, 2 bad input, 3 NaN/inf loss (the last checkpoint is intact), "
        "4 stopped by SIGTERM/SIGINT after a checkpoint (resume with --resume RUN_DIR), "
        "130 a second Ctrl-C (stopped at once)"
    )
    p = OneLineParser(
        prog=spec.prog,
        description=spec.description,
        usage=usage,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    notes = "; ".join(f"{k}: {v}" for k, v in spec.config.PRESET_NOTES.items())
    p.add_argument(
        "--preset",
        choices=sorted(spec.config.PRESETS),
        help=f"{notes} (default: {spec.config.DEFAULT_PRESET})",
    )
    p.add_argument(
        "--out",
        metavar="RUN_DIR",
        help=f"run directory (default: runs/{spec.name}-<date>-<time>; required under torchrun); "
        "one holding a run of the same config is continued",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest checkpoint; flags given with it "
        "override its saved config (e.g. more --epochs)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (neither the live bar nor the lines of a log)",
    )
    preset = _chosen_preset(spec, argv)
    add_config_flags(p, spec.config.CONFIG, spec.config.PRESETS[preset], f"preset {preset}")
    return p


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def open_run(spec: LoopCLI, args: argparse.Namespace, overrides: dict) -> tuple[Any, Path, bool]:
    """(config, run directory, continue it?) from the flags; ConfigError for a conflict."""
    from fastadl.runtime.distributed import under_torchrun
    from fastadl.runtime.rundir.files import read_config_dict

    def saved_config(run_dir: Path):
        source = str(run_dir / "config.json")
        return spec.config.CONFIG.from_dict(read_config_dict(run_dir), source=source)

    if args.resume:
        if args.out or args.preset:
            flag = "--out" if args.out else "--preset"
            raise ConfigError(f"{flag} does not go with --resume (the run keeps its directory "
                              "and its saved config; other flags override that config)")  # fmt: skip
        run_dir = Path(args.resume)
        return apply_overrides(saved_config(run_dir), overrides), run_dir, True
    cfg = resolve_preset(spec.config.PRESETS, args.preset or spec.config.DEFAULT_PRESET, overrides)
    if args.out is None:
        if under_torchrun():
            raise ConfigError(
                "--out is required under torchrun (every process and every restart must use "
                "the same run directory)"
            )
        return cfg, Path(f"runs/{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"), False
    run_dir = Path(args.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a run directory")
    if not (run_dir / "config.json").exists():
        return cfg, run_dir, False
    saved = saved_config(run_dir)
    if saved != cfg:
        diff = config_differences(saved, cfg)
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise ConfigError(
            f"{run_dir} already holds a run with another config ({'; '.join(diff[:3])}{more}); "
            f"pass --resume {run_dir} to continue it with these flags, or another --out"
        )
    if _is_rank0():
        print(f"{run_dir} holds a run of this config: continuing it", file=sys.stderr)
    return cfg, run_dir, True


def run_loop_cli(spec: LoopCLI, argv: list[str] | None = None) -> int:
    """The whole ``main`` of a loop's command line; returns the exit status."""
    args = parse(build_parser(spec, argv), argv)
    if isinstance(args, int):
        return args
    overrides = overrides_from(args, spec.config.CONFIG)

    # Heavy imports only once arguments are known (keeps --help fast).
    from fastadl.runtime.preemption import Preempted
    from fastadl.runtime.steps import NonFiniteError

    run_dir = None
    try:
        cfg, run_dir, resume = open_run(spec, args, overrides)
        result = spec.run(cfg, run_dir, resume=resume, progress=not args.no_progress)
    except NonFiniteError as e:
        return fail(
            f"{e}; the checkpoints are intact (none holds a non-finite value): continue from "
            f"the last one with: {spec.prog} --resume {run_dir}",
            3,
        )
    except Preempted as e:
        if _is_rank0():
            print(
                f"{e.signal_name}: stopped after step {e.step} with checkpoint {e.checkpoint}; "
                f"resume with: {spec.prog} --resume {run_dir} (or the same command again)",
                file=sys.stderr,
            )
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        where = (
            f"; resume from the last one with: {spec.prog} --resume {run_dir}" if run_dir else ""
        )
        return fail(f"interrupted: stopped at once, without a checkpoint{where}", EXIT_INTERRUPTED)
    except (*USER_ERRORS, OSError) as e:
        return fail(user_message(e))
    if _is_rank0():
        miou = f"{result.val_miou[-1]:.4f}" if result.val_miou else "n/a"
        print(
            f"{spec.name} stopped at step {result.step} (epoch {result.epoch}); val mIoU {miou}; "
            f"{spec.product}: {run_dir / spec.product}"
        )
    return 0
