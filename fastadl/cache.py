"""Where fastadl keeps what it builds or learns once per machine (Triton verdicts, the CPU
kernels' shared library): ``$FASTADL_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastadl``, else
``~/.cache/fastadl``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("FASTADL_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastadl"
