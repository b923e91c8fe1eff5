"""Crash-safe checkpoints in ``run_dir/checkpoints/`` with a ``latest`` pointer, and RNG state.

Write order (each step atomic; a crash at any point leaves the previous checkpoint loadable):
1. ``torch.save`` to a temporary file in the same directory, flush, fsync;
2. ``os.replace`` it onto ``<name>.pt`` and fsync the directory (the rename itself is durable);
3. rewrite ``latest`` (the file name of the new checkpoint) the same way;
4. prune older checkpoints of the same series.

Before step 1 the free space is checked against the state's size: a full disk stops the run with
a clear DiskSpaceError, never with half a file (a kill during a write leaves at most a stale
``.<name>.pt.*.tmp``, which ``remove_stale_temporaries`` deletes when the run starts again).

Checkpoints hold plain values only (tensors, numbers, strings, None, lists, tuples, dicts), so
they load with ``torch.load(weights_only=True)``: no pickled code runs when a run is resumed.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
SUFFIX = ".pt"

# What torch.load(weights_only=True) reads back without custom globals. Scalars are matched by
# exact type: np.float64 is a float subclass but pickles through numpy and would be refused.
_PLAIN_SCALARS = (bool, int, float, str, bytes, type(None))
_PLAIN_TORCH = (torch.Tensor, torch.Size, torch.dtype)


class CheckpointError(FileNotFoundError):
    """A checkpoint (or the run's ``latest`` pointer) is missing, unreadable or not plain data."""


class DiskSpaceError(CheckpointError):
    """Too little free space to write a checkpoint; the previous one is left as it was."""


# Room kept free beyond the checkpoint itself (the file system and the other run files need
# some too): a disk that would be left with less than this is treated as full.
DISK_MARGIN_BYTES = 64 * 2**20


def state_nbytes(value: Any) -> int:
    """Bytes of the tensors in a (nested) state: what torch.save will write, to within a few KB."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(state_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(state_nbytes(v) for v in value)
    return 64


def check_free_space(directory: Path, needed: int) -> None:
    """Raise DiskSpaceError naming ``directory`` if writing ``needed`` bytes would fill it."""
    free = shutil.disk_usage(directory).free
    if free < needed + DISK_MARGIN_BYTES:
        previous = latest_checkpoint(directory.parent)
        kept = f"the previous checkpoint {previous} is intact" if previous else "no checkpoint yet"
        raise DiskSpaceError(
            f"not enough free space in {directory} for a checkpoint: about "
            f"{(needed + DISK_MARGIN_BYTES) / 2**20:.0f} MiB needed, {free / 2**20:.0f} MiB free; "
            f"{kept} (free some space or lower --keep-checkpoints, then resume)"
        )


def remove_stale_temporaries(run_dir: str | os.PathLike) -> int:
    """Delete the temporary files a killed checkpoint write left behind; returns how many."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    stale = list(directory.glob(".*.tmp")) if directory.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def _fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directory handles are not fsync-able
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: Path, write) -> None:
    """Call ``write(binary_file)`` on a temp file next to ``target``, fsync, rename it into place
    (a crash leaves the old file or the new one, never a mix). Disk full → DiskSpaceError."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskSpaceError(
                f"the disk holding {target.parent} filled up while writing {target.name}; "
                "the previous checkpoint is intact (free some space, then resume)"
            ) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def check_plain(value: Any, where: str = "state") -> None:
    """Raise TypeError naming the first entry that weights_only loading could not read back."""
    if isinstance(value, dict):
        if type(value) not in (dict, OrderedDict):  # e.g. defaultdict pickles its factory
            raise TypeError(f"{where} is a {type(value).__name__}; store a plain dict")
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}, not str or int")
            check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        if type(value) not in (list, tuple):  # namedtuples and friends pickle their class
            raise TypeError(f"{where} is a {type(value).__name__}; store a plain list or dict")
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
    elif type(value) not in _PLAIN_SCALARS and not isinstance(value, _PLAIN_TORCH):
        raise TypeError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}; checkpoints hold "
            "only tensors, numbers, strings, None, lists and dicts (convert it, e.g. "
            "dataclasses.asdict or .tolist())"
        )


def _series(stem: str) -> tuple[str, int] | None:
    """'epoch_0012' → ('epoch_', 12); None for a name without a trailing number."""
    m = re.fullmatch(r"(.*?)(\d+)", stem)
    return (m.group(1), int(m.group(2))) if m else None


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``run_dir/checkpoints/latest`` names, or None if there is no pointer."""
    pointer = Path(run_dir) / CHECKPOINT_DIR / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    return pointer.parent / name if name else None


def save_checkpoint(run_dir: str | os.PathLike, state: dict, name: str, keep: int = 2) -> Path:
    """Write ``state`` to run_dir/checkpoints/<name>.pt atomically, point ``latest`` at it, prune.

    keep: how many checkpoints of this name's series survive (a series is the name with its
    trailing number removed, so 'epoch_3' prunes older 'epoch_N' but never 'best'); <= 0 keeps
    all. The new file and the one ``latest`` names are never pruned. Returns the written path.
    """
    if not name or "/" in name or name == LATEST or name.startswith("."):
        raise ValueError(f"invalid checkpoint name {name!r}")
    check_plain(state)
    directory = Path(run_dir) / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    check_free_space(directory, state_nbytes(state))
    target = directory / f"{name}{SUFFIX}"
    # Look torch.save up at call time (not `from torch import save`) so tests can make it fail.
    atomic_write(target, lambda f: torch.save(state, f))
    atomic_write(directory / LATEST, lambda f: f.write(f"{target.name}\n".encode()))
    if keep > 0:
        _prune(directory, target, keep)
    return target


def _prune(directory: Path, written: Path, keep: int) -> None:
    """Delete the oldest checkpoints of ``written``'s series beyond ``keep``."""
    series = _series(written.stem)
    if series is None:
        return  # a one-off name ('best', 'final') has no older siblings to prune
    protected = {written.name, (latest_checkpoint(directory.parent) or written).name}
    siblings = []
    for p in directory.glob(f"*{SUFFIX}"):
        s = _series(p.stem)
        if s is not None and s[0] == series[0]:
            siblings.append((s[1], p.stat().st_mtime, p))
    siblings.sort(key=lambda t: (t[0], t[1]))
    for _, _, p in siblings[: max(0, len(siblings) - keep)]:
        if p.name not in protected:
            p.unlink(missing_ok=True)


def _load_failure(e: Exception) -> str:
    """torch.load's error as one line (its weights_only refusal is several paragraphs)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return f"not a plain-data torch checkpoint (torch.load(weights_only=True): {detail})"
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def load_checkpoint(
    path_or_run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict:
    """Load a checkpoint file, or a run directory's (or its checkpoints/ dir's) latest one.

    Raises CheckpointError naming the path when it is missing, truncated, corrupt or not plain.
    """
    path = Path(path_or_run_dir)
    if path.is_dir():
        run_dir = path.parent if (path / LATEST).is_file() else path
        resolved = latest_checkpoint(run_dir)
        if resolved is None:
            raise CheckpointError(
                f"no checkpoint in {path}: {run_dir / CHECKPOINT_DIR / LATEST} is missing"
            )
        path = resolved
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, non-plain globals, ...
        raise CheckpointError(f"cannot load checkpoint {path}: {_load_failure(e)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


def rng_state() -> dict:
    """Python, NumPy, torch CPU and every CUDA device's RNG state, as plain values."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict = {
        "python": {"version": version, "state": list(words), "gauss_next": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(d: dict) -> None:
    """Restore what ``rng_state`` captured.

    CUDA states are restored for min(saved, visible) devices: resuming on a machine with a
    different GPU count still restores what it can rather than failing the run.
    """
    py = d["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npd = d["numpy"]
    keys = npd["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((npd["kind"], keys, npd["pos"], npd["has_gauss"], npd["cached_gaussian"]))
    torch.set_rng_state(d["torch"].cpu())
    if "cuda" in d and torch.cuda.is_available():
        saved = d["cuda"]
        for i in range(min(len(saved), torch.cuda.device_count())):
            torch.cuda.set_rng_state(saved[i].cpu(), i)


def load_module_state(module: torch.nn.Module, weights: Any, source: str) -> None:
    """``module.load_state_dict(weights)`` with a one-line CheckpointError naming ``source``
    (the checkpoint was written for another network) instead of torch's key listing."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError, KeyError, AttributeError) as e:
        lines = str(e).strip().splitlines()
        detail = (lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__).strip()
        raise CheckpointError(
            f"the saved {source} weights do not fit this network ({detail[:200]})"
        ) from None
