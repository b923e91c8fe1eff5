"""``python -m fastadl.export``: a retrained network as a self-contained model for deployment.

python -m fastadl.export --checkpoint runs/train-S --size 1024x2048 --out model.pt2
python -m fastadl.export --checkpoint ckpt.pt --size 513x513 --out model.pt2 --dtype bf16
python -m fastadl.export --checkpoint runs/train-S --size 1024x2048 --out model.onnx --format onnx
python -m fastadl.export --checkpoint runs/train-S --format pretrained --out autodeeplab-S/

The default format is an AOTInductor model package (.pt2) for one fixed input size, which the
native runner (``fastadl-infer``, built from CMakeLists.txt) or
``torch._inductor.aoti_load_package`` runs; ``--format onnx`` writes an ONNX file instead.
Both carry the class names, palette, input size and mean/std as metadata. ``--format
pretrained`` writes a model folder instead (config.json, model.safetensors, a README.md model
card: fastadl/deploy/pretrained.py), for any input size, in the layout the Hugging Face Hub
serves; every ``--checkpoint`` of fastadl takes such a folder.
"""

from __future__ import annotations

import argparse
import sys
import time

from fastadl.runtime.cli import USER_ERRORS, command_parser, fail


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` → (H, W), both positive integers (an argparse ``type=``)."""
    parts = text.lower().split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 1024x2048), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"both sides must be positive, got {text!r}")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "python -m fastadl.export",
        "Export a retrained network (eval mode, BatchNorm folded into its convs) for one "
        "fixed input size: an AOTInductor model package (.pt2) for fastadl-infer, or ONNX.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN_DIR|FILE",
        help="a training run directory (python -m fastadl.train; its latest checkpoint), a "
        "checkpoint .pt file or a model folder (--format pretrained)",
    )
    p.add_argument(
        "--size",
        type=parse_size,
        metavar="HxW",
        help="the input size the model is compiled for (the runner scales larger images down "
        "to fit and pads smaller ones); needed for aoti and onnx",
    )
    p.add_argument(
        "--out",
        required=True,
        help="the file to write: model.pt2 (or .onnx); the folder for --format pretrained",
    )
    p.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="the device the compiled model runs on",
    )
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=("fp32", "bf16"),
        help="compute precision (inputs and logits stay float32)",
    )
    p.add_argument(
        "--format",
        default="aoti",
        choices=("aoti", "onnx", "pretrained"),
        help="aoti: AOTInductor model package; onnx: ONNX through torch.onnx (dynamo); "
        "pretrained: a model folder (config.json, model.safetensors, README.md model card)",
    )
    return p


def write_folder(args: argparse.Namespace) -> int:
    """--format pretrained: the model folder of --checkpoint in --out."""
    from fastadl.deploy.pretrained import save_pretrained
    from fastadl.runtime.rundir.checkpoint import CheckpointError
    from fastadl.search.config import ConfigError
    from fastadl.space.genotype import GenotypeError

    try:
        out = save_pretrained(args.checkpoint, args.out)
    except (ConfigError, CheckpointError, GenotypeError, *USER_ERRORS) as e:
        return fail(str(e))
    files = sorted(p.name for p in out.iterdir())
    print(f"wrote the model folder {out} ({', '.join(files)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.format == "pretrained":
        return write_folder(args)
    if args.size is None:
        return fail(f"--size HxW is needed for --format {args.format}")

    # Heavy imports only once arguments are known (keeps --help fast).
    from tqdm import tqdm

    from fastadl.deploy.exporter import run_export
    from fastadl.runtime.rundir.checkpoint import CheckpointError
    from fastadl.search.config import ConfigError
    from fastadl.space.genotype import GenotypeError

    start = time.perf_counter()
    stages = ["load", "export + compile" if args.format == "aoti" else "export"]
    # disable=None: a bar on a terminal only, so logs and piped stderr keep one-line errors.
    with tqdm(total=len(stages), desc="export", file=sys.stderr, disable=None) as bar:
        seen: list[str] = []

        def step(name: str) -> None:
            if seen:
                bar.update(1)
            seen.append(name)
            bar.set_postfix_str(name)

        try:
            result = run_export(
                args.checkpoint,
                args.size,
                args.out,
                device=args.device,
                dtype=args.dtype,
                fmt=args.format,
                step=step,
            )
        except (ConfigError, CheckpointError, GenotypeError, *USER_ERRORS) as e:
            bar.close()
            return fail(str(e))
        bar.update(bar.total - bar.n)
    h, w = result.size
    megabytes = result.out.stat().st_size / 2**20
    print(
        f"wrote {result.out} ({result.format}, {result.device}, {result.dtype}, input {h}x{w}, "
        f"{len(result.class_names)} classes, {result.batchnorms_folded} BatchNorms folded, "
        f"{megabytes:.1f} MB) in {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
