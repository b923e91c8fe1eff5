"""``python -m fastadl.predict``: segment image files with a trained network.

python -m fastadl.predict photo1.jpg photo2.png --checkpoint runs/train-S --out predictions/
python -m fastadl.predict frames/*.png --checkpoint ckpt.pt --out pred/ --multi-scale --flip

For each image ``<name>_mask.png`` (class ids as a palette PNG, in the dataset's colours) and
``<name>_overlay.png`` (the image blended with the coloured mask) are written to --out. An
image that cannot be read is reported; the others are still processed, and the exit status is
then non-zero.
"""

from __future__ import annotations

import argparse
import sys

from fastadl.evaluate import MULTI_SCALES, parse_scales
from fastadl.export import parse_size
from fastadl.runtime.cli import USER_ERRORS, OneLineParser, fail, parse


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m fastadl.predict",
        description="Write colour-mapped masks and overlays for images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (png, jpg, ...)")
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN_DIR|FILE",
        help="a training run directory (its latest checkpoint), a checkpoint .pt file or a "
        "model folder (python -m fastadl.export --format pretrained)",
    )
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument(
        "--multi-scale", action="store_true", help=f"average over the scales {MULTI_SCALES}"
    )
    p.add_argument("--scales", type=parse_scales, help="explicit comma-separated scales")
    p.add_argument("--flip", action="store_true", help="also average horizontally flipped inputs")
    p.add_argument(
        "--size",
        type=parse_size,
        metavar="HxW",
        help="run the network at this fixed input size, as a package from python -m "
        "fastadl.export does (larger images scaled down to fit, smaller ones padded); "
        "default: each image at its own size",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    scales = args.scales or (parse_scales(MULTI_SCALES) if args.multi_scale else (1.0,))

    # Heavy imports only once arguments are known (keeps --help fast).
    from fastadl.deploy.inference import model_from_checkpoint
    from fastadl.deploy.predictor import predict_files
    from fastadl.runtime.distributed import resolve_device
    from fastadl.runtime.rundir.checkpoint import CheckpointError
    from fastadl.search.config import ConfigError
    from fastadl.space.genotype import GenotypeError

    try:
        loaded = model_from_checkpoint(args.checkpoint, resolve_device(args.device))
        report = predict_files(
            loaded,
            args.images,
            args.out,
            scales=scales,
            flip=args.flip,
            amp=args.amp,
            size=args.size,
        )
    except (ConfigError, CheckpointError, GenotypeError, *USER_ERRORS) as e:
        return fail(str(e))
    done = len(args.images) - len(report.failures)
    print(f"wrote masks and overlays of {done} image(s) to {args.out}")
    if report.failures:
        lines = "\n".join(f"  {m}" for m in report.failures)
        return fail(f"{len(report.failures)} of {len(args.images)} image(s) failed:\n{lines}", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
