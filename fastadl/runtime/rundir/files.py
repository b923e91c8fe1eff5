"""The run directory's small files: the resolved config and where everything else goes.

Layout (docs/ARCHITECTURE.md): config.json, split.json, metrics.jsonl, checkpoints/
(with a ``latest`` pointer), genotype.json, plots/*.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastadl.runtime.rundir.checkpoint import atomic_write


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON at ``path``, atomically (see checkpoint.atomic_write)."""
    text = json.dumps(obj, indent=2) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def write_run_files(run_dir: Path, cfg) -> None:
    """Create ``run_dir`` and save the resolved config as config.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", cfg.to_dict())


def read_config_dict(run_dir: Path) -> dict:
    """The config.json a run saved, or a clear FileNotFoundError naming it."""
    path = Path(run_dir) / "config.json"
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: is {run_dir} a fastadl run directory?"
        ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
