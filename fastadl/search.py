"""``python -m fastadl.search``: run an Auto-DeepLab architecture search.

python -m fastadl.search                                   # tiny preset on synthetic data
python -m fastadl.search --preset paper --data-root /data/cityscapes
python -m fastadl.search --resume runs/search-20261125-101500
torchrun --nproc_per_node=2 --max-restarts=3 -m fastadl.search --out runs/ddp
"""

from __future__ import annotations

import sys

from fastadl.cli_common import LoopCLI, run_loop_cli
from fastadl.cli_common import build_parser as _build_parser
from fastadl.engine.config import PRESETS, SearchConfig


def _summary(result, run_dir) -> str:
    miou = f"{result.val_miou[-1]:.4f}" if result.val_miou else "n/a"
    return (
        f"search stopped at step {result.step} (epoch {result.epoch}); val mIoU {miou}; "
        f"genotype: {run_dir / 'genotype.json'}"
    )


CLI = LoopCLI(
    prog="python -m fastadl.search",
    description=(
        "Search an Auto-DeepLab cell and network-level path (bilevel, first-order). Writes "
        "config.json, split.json, metrics.jsonl, checkpoints/, genotype.json and plots/ into "
        "the run directory. Exit status: 0 done, 2 bad input, 3 NaN/inf loss, 4 stopped by "
        "SIGTERM/SIGINT after a checkpoint (resume with --resume RUN_DIR)."
    ),
    kind="search",
    config_cls=SearchConfig,
    presets=PRESETS,
    default_preset="tiny",
    preset_help="tiny: a few CPU minutes on synthetic data; paper: the paper's Cityscapes setting",
    run="fastadl.engine.searcher:run_search",
    summary=_summary,
)


def build_parser(argv: list[str] | None = None):
    return _build_parser(CLI, argv)


def main(argv: list[str] | None = None) -> int:
    return run_loop_cli(CLI, argv)


if __name__ == "__main__":
    sys.exit(main())
