"""``metrics.jsonl``: one JSON object per line, appended as the run goes (ARCHITECTURE.md).

Each line is flushed as written, so a crash loses at most the line in progress; ``read`` skips
such a torn last line. Non-finite floats are written as ``null`` (strict JSON has no NaN), so any
JSON reader (jq, pandas) can read the file. On resume the engine calls ``truncate_to`` with the
record count its checkpoint saw, dropping what was written after it: the log never repeats a
step or an epoch.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from fastadl.runtime.rundir.checkpoint import atomic_write


def _plain(value: Any) -> Any:
    """JSON-ready copy: NaN/inf → None, 0-d tensors and numpy scalars → Python numbers."""
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    elif hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class MetricsLog:
    """Appends records to a JSONL file (created with its parent directory on first use)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.records = len(MetricsLog.read(self.path))  # what a checkpoint saves, see truncate_to

    def append(self, record: dict) -> None:
        """Write ``record`` as one line and flush it to the OS."""
        line = json.dumps(_plain(record), allow_nan=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
        self.records += 1

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict]:
        """All records of a JSONL file ([] if it does not exist).

        A malformed line is an error (named with its line number) unless it is the last line,
        which a crash may have cut short and is skipped.
        """
        path = Path(path)
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                if i == len(lines) - 1:
                    break
                raise ValueError(f"{path}:{i + 1}: not a JSON object ({e.msg})") from None
        return records


def read(path: str | os.PathLike) -> list[dict]:
    """Module-level alias of ``MetricsLog.read``."""
    return MetricsLog.read(path)


def truncate_after(path: str | os.PathLike, key: str, value: float) -> int:
    """Atomically rewrite ``path`` keeping records with record[key] <= value; returns how many.

    Records without ``key`` (or with null there), e.g. a run header, are kept: they are not
    "after" anything. A missing file is left missing and 0 is returned.
    """
    records = MetricsLog.read(path)
    return _rewrite(Path(path), [r for r in records if r.get(key) is None or r[key] <= value])


def truncate_to(path: str | os.PathLike, count: int) -> int:
    """Atomically keep the first ``count`` records of ``path`` (a checkpoint's ``metrics_records``:
    exact even where a step and an epoch record share a step number); returns how many."""
    return _rewrite(Path(path), MetricsLog.read(path)[:count])


def _rewrite(path: Path, kept: list[dict]) -> int:
    if not path.is_file():
        return 0
    text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return len(kept)
