"""``python -m fastadl.search``: run an Auto-DeepLab architecture search.

python -m fastadl.search                                   # tiny preset on synthetic data
python -m fastadl.search --preset paper --data-root /data/cityscapes
python -m fastadl.search --resume runs/search-20261125-101500
torchrun --nproc_per_node=2 -m fastadl.search --preset tiny --out runs/ddp
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fastadl.cli_common import USER_ERRORS, add_config_flags, fail, overrides_from
from fastadl.engine.config import PRESETS, SearchConfig, resolve, resolve_from


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastadl.search",
        description=(
            "Search an Auto-DeepLab cell and network-level path (bilevel, first-order). Writes "
            "config.json, split.json, metrics.jsonl, checkpoints/, genotype.json and plots/ "
            "into the run directory."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--preset",
        default="tiny",
        choices=sorted(PRESETS),
        help="tiny: a few CPU minutes on synthetic data; paper: the paper's Cityscapes setting",
    )
    p.add_argument("--data", help="dataset: synthetic, cityscapes, voc, ade20k, folder")
    p.add_argument("--data-root", help="dataset folder (not needed for synthetic)")
    p.add_argument("--out", help="run directory (default: runs/search-<date>-<time>)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR exactly where its last checkpoint left off",
    )
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p, SearchConfig, skip={"data", "data_root", "device"})
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = overrides_from(args, SearchConfig)
    overrides.update({"data": args.data, "data_root": args.data_root, "device": args.device})

    # Heavy imports only once arguments are known (keeps --help fast).
    from fastadl.engine.checkpoint import CheckpointError
    from fastadl.engine.config import ConfigError
    from fastadl.engine.run_dir import read_config_dict, write_run_files
    from fastadl.engine.searcher import run_search
    from fastadl.engine.steps import NonFiniteError

    try:
        if args.resume:
            run_dir = Path(args.resume)
            saved = SearchConfig.from_dict(
                read_config_dict(run_dir), source=str(run_dir / "config.json")
            )
            cfg = resolve_from(saved, overrides)
            write_run_files(run_dir, cfg)
        else:
            cfg = resolve(args.preset, overrides)
            run_dir = Path(args.out or f"runs/search-{time.strftime('%Y%m%d-%H%M%S')}")
            if (run_dir / "config.json").exists():
                return fail(
                    f"{run_dir} already holds a run; pass --resume {run_dir} or another --out"
                )
        result = run_search(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    except NonFiniteError as e:
        return fail(f"{e}; the last good checkpoint in {run_dir / 'checkpoints'} is intact", 3)
    except (ConfigError, CheckpointError, *USER_ERRORS) as e:
        return fail(str(e))
    miou = f"{result.val_miou[-1]:.4f}" if result.val_miou else "n/a"
    print(
        f"search stopped at step {result.step} (epoch {result.epoch}); val mIoU {miou}; "
        f"genotype: {run_dir / 'genotype.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
