"""``python -m fastadl.search``: search an Auto-DeepLab cell and network-level path (bilevel,
first-order; shared/AUTO_DEEPLAB.md §3) and write config.json, split.json, metrics.jsonl,
checkpoints/, genotype.json and plots/ into the run directory.

examples:
  python -m fastadl.search                                  # tiny preset on synthetic data
  python -m fastadl.search --preset paper --data-root /data/cityscapes --out runs/paper
  python -m fastadl.search --resume runs/paper --epochs 50  # continue, with more epochs
  torchrun --nproc_per_node=2 --max-restarts=3 -m fastadl.search --out runs/ddp
"""

from __future__ import annotations

import sys

from fastadl.cli_common import LoopCLI
from fastadl.engine import config

CLI = LoopCLI.of(__doc__, config, "fastadl.engine.searcher:run_search", "genotype.json")
main = CLI.main

if __name__ == "__main__":
    sys.exit(main())
