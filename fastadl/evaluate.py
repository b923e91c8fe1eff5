"""``python -m fastadl.evaluate``: mIoU of a trained checkpoint, single- or multi-scale.

python -m fastadl.evaluate --checkpoint runs/train-S
python -m fastadl.evaluate --checkpoint runs/train-S --multi-scale --flip
python -m fastadl.evaluate --checkpoint ckpt.pt --data cityscapes --data-root /data/cityscapes
torchrun --nproc_per_node=2 -m fastadl.evaluate --checkpoint runs/train-S
"""

from __future__ import annotations

import argparse
import sys

from fastadl.runtime.cli import USER_ERRORS, OneLineParser, fail, parse

MULTI_SCALES = "0.5,0.75,1.0,1.25,1.5,1.75"  # inference.DEFAULT_SCALES, kept import-free here


def parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None
    if not scales or any(s <= 0 for s in scales):
        raise argparse.ArgumentTypeError(f"scales must be positive numbers, got {text!r}")
    return scales


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m fastadl.evaluate",
        description=(
            "Evaluate a trained network: per-class IoU, mIoU, pixel accuracy. Writes eval.json "
            "and plots/confusion.png into the run directory (or --out)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN_DIR|FILE",
        help="a training run directory (its latest checkpoint), a checkpoint .pt file or a "
        "model folder (python -m fastadl.export --format pretrained)",
    )
    p.add_argument("--data", help="dataset (default: the one the network was trained on)")
    p.add_argument("--data-root", help="dataset folder (default: the training run's)")
    p.add_argument("--split", default="val", choices=("train", "val"))
    p.add_argument(
        "--multi-scale",
        action="store_true",
        help=f"average class probabilities over the scales {MULTI_SCALES}",
    )
    p.add_argument("--scales", type=parse_scales, help="explicit comma-separated scales")
    p.add_argument("--flip", action="store_true", help="also average horizontally flipped inputs")
    p.add_argument(
        "--out",
        help="output directory (default: the checkpoint's run directory; for a checkpoint file "
        "outside one or a model folder, the current directory)",
    )
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="data loading processes")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N images")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    scales = args.scales or (parse_scales(MULTI_SCALES) if args.multi_scale else (1.0,))
    if args.batch_size < 1 or args.workers < 0 or args.limit < 0:
        return fail("--batch-size must be >= 1, --workers and --limit >= 0")

    # Heavy imports only once arguments are known (keeps --help fast).
    from fastadl.deploy.evaluator import run_evaluate
    from fastadl.runtime.distributed import is_main_process
    from fastadl.runtime.rundir.checkpoint import CheckpointError
    from fastadl.search.config import ConfigError
    from fastadl.space.genotype import GenotypeError

    try:
        result = run_evaluate(
            args.checkpoint,
            data=args.data,
            data_root=args.data_root,
            split=args.split,
            scales=scales,
            flip=args.flip,
            out_dir=args.out,
            batch_size=args.batch_size,
            workers=args.workers,
            limit=args.limit,
            device=args.device,
            amp=args.amp,
        )
    except (ConfigError, CheckpointError, GenotypeError, *USER_ERRORS) as e:
        return fail(str(e))
    if is_main_process():
        print(result.table())
        print(f"scales {', '.join(map(str, scales))}{' + flip' if args.flip else ''}")
        print(f"wrote {result.out_dir / 'eval.json'} and {result.out_dir / 'plots/confusion.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
