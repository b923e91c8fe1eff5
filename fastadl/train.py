"""``python -m fastadl.train``: retrain an Auto-DeepLab network from a genotype.

python -m fastadl.train                                   # tiny preset: tiny model, synthetic data
python -m fastadl.train --genotype runs/search-X/genotype.json --model S --out runs/train-S
python -m fastadl.train --preset cityscapes --data-root /data/cityscapes --model L
python -m fastadl.train --resume runs/train-S
torchrun --nproc_per_node=2 -m fastadl.train --out runs/ddp
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fastadl.cli_common import USER_ERRORS, add_config_flags, fail, overrides_from
from fastadl.engine.train_config import MODELS, PRESETS, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastadl.train",
        description=(
            "Retrain the network a genotype describes (SGD, poly LR, drop-path). Writes "
            "config.json, genotype.json, metrics.jsonl, checkpoints/ and plots/curves.png into "
            "the run directory."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--preset",
        default="tiny",
        choices=sorted(PRESETS),
        help="tiny: a few CPU minutes on synthetic data; cityscapes/voc/ade20k: the paper's setting",
    )
    p.add_argument(
        "--genotype",
        help="'paper', a genotype.json, or a search run directory (default: the preset's, paper)",
    )
    p.add_argument("--model", choices=MODELS, help="network size (default: the preset's)")
    p.add_argument("--data", help="dataset: synthetic, cityscapes, voc, ade20k, folder")
    p.add_argument("--data-root", help="dataset folder (not needed for synthetic)")
    p.add_argument("--out", help="run directory (default: runs/train-<date>-<time>)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR exactly where its last checkpoint left off",
    )
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    skip = {"genotype", "model", "data", "data_root", "device"}
    add_config_flags(p, TrainConfig, skip=skip)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = overrides_from(args, TrainConfig)
    for name in ("genotype", "model", "data", "data_root", "device"):
        overrides[name] = getattr(args, name)

    # Heavy imports only once arguments are known (keeps --help fast).
    from fastadl.engine.checkpoint import CheckpointError
    from fastadl.engine.config import ConfigError
    from fastadl.engine.distributed import is_main_process
    from fastadl.engine.run_dir import read_config_dict, write_run_files
    from fastadl.engine.steps import NonFiniteError
    from fastadl.engine.train_config import resolve, resolve_from
    from fastadl.engine.trainer import run_train
    from fastadl.genotype import GenotypeError

    run_dir = Path(args.resume or args.out or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        if args.resume:
            saved = TrainConfig.from_dict(
                read_config_dict(run_dir), source=str(run_dir / "config.json")
            )
            cfg = resolve_from(saved, overrides)
            write_run_files(run_dir, cfg)
        else:
            cfg = resolve(args.preset, overrides)
            if (run_dir / "config.json").exists():
                return fail(
                    f"{run_dir} already holds a run; pass --resume {run_dir} or another --out"
                )
        result = run_train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    except NonFiniteError as e:
        return fail(f"{e}; the last good checkpoint in {run_dir / 'checkpoints'} is intact", 3)
    except (ConfigError, CheckpointError, GenotypeError, *USER_ERRORS) as e:
        return fail(str(e))
    if not is_main_process():
        return 0
    miou = f"{result.val_miou[-1]:.4f}" if result.val_miou else "n/a"
    print(
        f"training stopped at step {result.step} (epoch {result.epoch}); val mIoU {miou}; "
        f"checkpoints: {run_dir / 'checkpoints'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
