"""Shared pieces of the command-line entry points: dataclass fields as flags, error reporting.

Kept free of heavy imports so ``--help`` stays fast and initialises no CUDA or Triton.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from typing import Any

# Errors a user can cause; reported as one line, never as a traceback from deep inside torch.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError)


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type, skip: set[str]) -> None:
    """One ``--field-name`` flag per dataclass field (default None = keep the preset's value)."""
    group = parser.add_argument_group("config overrides (default: the preset's value)")
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # `str | None`
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if kind is bool:
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None
            )
        else:
            group.add_argument(
                flag, dest=f.name, type=kind, default=None, metavar=kind.__name__.upper()
            )


def overrides_from(args: argparse.Namespace, config_cls: type) -> dict[str, Any]:
    """The config fields the user set on the command line."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
