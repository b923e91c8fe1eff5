"""The trainA/trainB split of the search's training set (docs/METHOD.md §3): network
weights learn on trainA, α and β on trainB. It is fixed by a seed, saved as split.json in the run
directory and reused on resume, so a resumed search never mixes the halves."""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Sequence

from fastadl.data.base import DatasetError


def make_split(ids: Sequence[str], seed: int) -> dict:
    """Two disjoint halves of ``ids`` covering all of them (trainA gets the odd one out).

    Depends only on the set of ids and ``seed``, not on their order. Each half is sorted.
    """
    ids = sorted(ids)
    if len(set(ids)) != len(ids):
        raise DatasetError("make_split: the dataset ids are not unique")
    if len(ids) < 2:
        raise DatasetError(f"make_split: need at least 2 training items to split, got {len(ids)}")
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    half = (len(ids) + 1) // 2
    return {"seed": seed, "trainA": sorted(shuffled[:half]), "trainB": sorted(shuffled[half:])}


def save_split(path: str | os.PathLike, split: dict) -> None:
    """Write ``split`` as JSON atomically (temporary file, then os.replace)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(split, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def load_split(path: str | os.PathLike, ids: Sequence[str]) -> dict:
    """Read a split saved by save_split and check it against the dataset's current ``ids``.

    Raises DatasetError naming the file if it is unreadable or malformed, if the halves overlap,
    or if it names ids the dataset no longer has. Dataset ids that neither half names (the
    dataset grew) are left out of the search, with a warning.
    """
    try:
        with open(path) as f:
            split = json.load(f)
    except OSError as e:
        raise DatasetError(f"cannot read split file {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"split file {path} is not valid JSON ({e})") from None
    if not isinstance(split, dict) or not all(
        isinstance(split.get(k), list) and all(isinstance(i, str) for i in split[k])
        for k in ("trainA", "trainB")
    ):
        raise DatasetError(
            f"split file {path}: expected an object with string lists trainA, trainB"
        )
    a, b = set(split["trainA"]), set(split["trainB"])
    if a & b:
        raise DatasetError(
            f"split file {path}: {len(a & b)} id(s) in both trainA and trainB "
            f"(e.g. {sorted(a & b)[:3]})"
        )
    known = set(ids)
    missing = sorted((a | b) - known)
    if missing:
        raise DatasetError(
            f"split file {path} names {len(missing)} id(s) the dataset does not have "
            f"(e.g. {missing[:3]}): the data changed since the split was made; use the original "
            "--data/--data-root/seed, or start a new run directory"
        )
    unused = len(known - a - b)
    if unused:
        warnings.warn(
            f"split file {path}: {unused} dataset item(s) are in neither trainA nor trainB and "
            "will not be used",
            stacklevel=2,
        )
    return split
