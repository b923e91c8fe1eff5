"""``python -m fastadl.search``: search an Auto-DeepLab cell and network-level path (bilevel,
first-order; docs/METHOD.md §3) and write config.json, split.json, metrics.jsonl,
checkpoints/, genotype.json and plots/ into the run directory.

examples:
  python -m fastadl.search                                  # tiny preset on synthetic data
  python -m fastadl.search --preset paper --data-root /data/cityscapes --out runs/paper
  python -m fastadl.search --resume runs/paper --epochs 50  # continue, with more epochs
  torchrun --nproc_per_node=2 --max-restarts=3 -m fastadl.search --out runs/ddp
"""

from __future__ import annotations

from fastadl.runtime.cli import LoopCLI
from fastadl.search import config


def run_search(cfg, run_dir, **kwargs):
    """fastadl/search/searcher.py's ``run_search``, imported once the arguments are known (keeps
    ``--help`` free of torch)."""
    from fastadl.search.searcher import run_search as run

    return run(cfg, run_dir, **kwargs)


CLI = LoopCLI.of(__doc__, config, run_search, "genotype.json")
main = CLI.main
