"""The run directory's small files: the resolved config and where everything else goes.

Layout (shared/ARCHITECTURE.md): config.json, split.json, metrics.jsonl, checkpoints/
(with a ``latest`` pointer), genotype.json, plots/*.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
