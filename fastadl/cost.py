"""``python -m fastadl.cost``: what one search iteration costs per backend, and what the whole
search would take on named GPUs.

    python -m fastadl.cost --preset paper                   # the paper's setting (§3)
    python -m fastadl.cost --preset tiny --crop-size 128    # any preset + config overrides
    python -m fastadl.cost --preset paper --time-iters 5    # also time real iterations (CUDA)
    python -m fastadl.cost --genotype G --size 512x1024     # a derived network (budget/cli.py)

Per search iteration (one weight step + one α/β step) and backend: FLOPs (convolutions and
matrix products, counted analytically: fastadl/diagnostics/pieces.py), minimum bytes moved,
saved activations and kernel launches (counted from the real modules on fake tensors:
fastadl/diagnostics/counting.py). Then the whole search's projected time on P100, V100, A100
and H100 from their peak rates and a per-launch cost, beside the paper's 3 P100-days; on a
CUDA machine (or with --time-iters on any device) a few real iterations are timed and
extrapolated.
"""

from __future__ import annotations

import argparse
import sys

from fastadl.runtime.cli import (
    USER_ERRORS,
    add_config_flags,
    command_parser,
    fail,
    overrides_from,
)
from fastadl.search.config import PRESETS, SearchConfig, resolve

# Training images per dataset (the split gives each half about a half of them).
TRAIN_IMAGES = {"cityscapes": 2975, "voc": 1464, "ade20k": 20210}
BACKENDS = ("reference", "fused", "triton")


def build_parser() -> argparse.ArgumentParser:
    from fastadl.diagnostics.gpus import GPUS, LAUNCH_US

    p = command_parser(
        "python -m fastadl.cost",
        "FLOPs, minimum bytes moved, saved activations and kernel launches of one search "
        "iteration per backend, and the whole search's projected time on named GPUs.",
    )
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="search preset")
    p.add_argument(
        "--train-images",
        type=int,
        help="training images of the dataset (default: Cityscapes 2975, VOC 1464, ADE20K 20210, "
        "synthetic: --num-images or 400; needed for --data folder)",
    )
    p.add_argument("--classes", type=int, help="classes (default: the dataset's)")
    p.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated backends to count"
    )
    p.add_argument("--gpus", default=",".join(GPUS), help=f"GPUs to project for: {', '.join(GPUS)}")
    p.add_argument(
        "--launch-us", type=float, default=LAUNCH_US, help="µs per kernel launch (eager)"
    )
    p.add_argument(
        "--time-iters",
        type=int,
        help="time this many real iterations per backend and extrapolate (default: 3 on CUDA, "
        "0 = none elsewhere)",
    )
    p.add_argument("--device", default="auto", help="device for --time-iters: auto, cpu, cuda:1")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(
        p, SearchConfig, PRESETS["paper"], "the paper preset", skip={"device", "backend"}
    )
    return p


def _num_classes(data: str) -> int:
    return {"cityscapes": 19, "voc": 21, "ade20k": 150, "synthetic": 6}.get(data, 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--genotype" or a.startswith("--genotype=") for a in argv):
        # a derived network's latency / multiply-adds / parameters (issue 25): its own parser
        from fastadl.budget.cli import main as network_cost
        from fastadl.train.model import load_genotype

        return network_cost(argv, load_genotype)
    args = build_parser().parse_args(argv)
    from fastadl.diagnostics.gpus import GPUS

    try:
        cfg = resolve(args.preset, overrides_from(args, SearchConfig))
    except USER_ERRORS as e:
        return fail(str(e))
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    if bad := [b for b in backends if b not in BACKENDS]:
        return fail(f"--backends: unknown {bad}; choose from {', '.join(BACKENDS)}")
    if bad := [g for g in gpus if g not in GPUS]:
        return fail(f"--gpus: unknown {bad}; choose from {', '.join(GPUS)}")
    if args.launch_us < 0:
        return fail(f"--launch-us must be >= 0, got {args.launch_us}")
    images = args.train_images
    if images is None:
        images = TRAIN_IMAGES.get(cfg.data) or (
            cfg.num_images or 400 if cfg.data == "synthetic" else None
        )
    if not images or images < 2:
        return fail(f"--train-images: give the training set's size for --data {cfg.data} (>= 2)")
    classes = args.classes or _num_classes(cfg.data)
    if classes < 1:
        return fail(f"--classes: give the number of classes for --data {cfg.data}")

    import torch

    from fastadl.diagnostics.cost_report import CostRun, run_cost

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(args.device)
        except RuntimeError as e:
            return fail(f"--device {args.device}: {e}")
        if device.type == "cuda" and not torch.cuda.is_available():
            return fail(f"--device {args.device}: CUDA is not available to this torch")
    iters = args.time_iters if args.time_iters is not None else (3 if device.type == "cuda" else 0)
    if iters < 0:
        return fail(f"--time-iters must be >= 0, got {iters}")
    run = CostRun(cfg, args.preset, images, classes, backends, gpus, args.launch_us, iters, device)
    run_cost(run, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
