"""``python -m fastadl.cost``: what one search iteration costs on the route each device runs,
and what the whole search would take on named GPUs.

    python -m fastadl.cost --preset paper                   # the paper's setting (§3)
    python -m fastadl.cost --preset tiny --crop-size 128    # any preset + config overrides
    python -m fastadl.cost --preset paper --time-iters 5    # also time real iterations (CUDA)
    python -m fastadl.cost --genotype G --size 512x1024     # a derived network (budget/cli.py)

Routes: ``cuda`` (search cells on the cell-level path's ATen operators, as on CUDA), ``cpu``
(the same path with its C++ kernels, as on a CPU) and, for comparison, ``reference``. Per search
iteration (one weight step + one α/β step) and route: FLOPs (convolutions and matrix products,
counted analytically: fastadl/diagnostics/pieces.py), minimum bytes moved, saved activations
and kernel launches (counted from the real modules on meta tensors, each distinct piece once:
fastadl/diagnostics/measure.py), the optimizer steps' launches and a validation forward's.
Then, for the routes a GPU runs, the whole search's projected time on P100, V100, A100 and
H100 from their peak rates and a per-launch cost, line by line (steps, optimizer steps and
validation counted, data loading estimated), beside the paper's 3 P100-days; with
--time-iters (default 3 on CUDA) a few real iterations are timed and extrapolated.
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
ROUTES = ("cuda", "cpu", "reference")
DEFAULT_ROUTES = "cuda,cpu"


def build_parser() -> argparse.ArgumentParser:
    from fastadl.diagnostics.gpus import GPUS, LAUNCH_US, LOAD_MS_PER_IMAGE

    p = command_parser(
        "python -m fastadl.cost",
        "FLOPs, minimum bytes moved, saved activations and kernel launches of one search "
        "iteration on the route each device runs (cuda: the cell-level path on ATen ops; cpu: "
        "the same path with its C++ kernels), with the optimizer steps and validation, and the "
        "whole search's projected time on named GPUs (steps, optimizers and validation "
        "counted, data loading estimated). Counting takes well under a minute on a CPU.",
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
        "--routes",
        default=DEFAULT_ROUTES,
        help=f"comma-separated routes to count: {', '.join(ROUTES)} (reference: the edge-by-edge "
        "sum, for comparison; projected: the GPU routes cuda and reference)",
    )
    p.add_argument(
        "--val-set-images",
        type=int,
        help="images in the validation set (default: Cityscapes 500, VOC 1449, ADE20K 2000, "
        "synthetic 100); --val-images caps what one validation reads",
    )
    p.add_argument(
        "--val-size",
        help="validation image size WIDTHxHEIGHT (default: the dataset's images as the config "
        "resizes them: Cityscapes' 2048x1024 × --resize-factor = 1024x512 at the paper preset, "
        "or --image-height/--image-width; synthetic: --image-size; else the training crop)",
    )
    p.add_argument(
        "--load-ms",
        type=float,
        default=None,
        help="ms to load one training image in one loader worker (decode, resize, crop; "
        f"default: timed for synthetic data, else {LOAD_MS_PER_IMAGE:g}, a stated figure)",
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


def _validation_args(args, data: str) -> tuple[tuple[int, int] | None, int]:
    """(--val-size as (H, W) or None, the validation set's images); ValueError names the flag."""
    from fastadl.diagnostics.overheads import VAL_IMAGES

    val_size = None
    if args.val_size:
        try:
            w, h = (int(v) for v in args.val_size.lower().split("x"))
        except ValueError:
            w = h = 0
        if w < 1 or h < 1:
            raise ValueError(
                f"--val-size: expected WIDTHxHEIGHT such as 1024x512, got {args.val_size!r}"
            )
        val_size = (h, w)
    val_images = args.val_set_images or VAL_IMAGES.get(data, 100)
    if val_images < 1:
        raise ValueError(f"--val-set-images must be >= 1, got {val_images}")
    return val_size, val_images


def _flag_problem(args: argparse.Namespace, routes: list[str], gpus: list[str]) -> str | None:
    """The first bad value among --routes, --gpus, --launch-us and --load-ms, said in a line."""
    from fastadl.diagnostics.gpus import GPUS

    if bad := [r for r in routes if r not in ROUTES] or not routes:
        return f"--routes: unknown {bad or args.routes!r}; choose from {', '.join(ROUTES)}"
    if bad := [g for g in gpus if g not in GPUS]:
        return f"--gpus: unknown {bad}; choose from {', '.join(GPUS)}"
    if args.launch_us < 0:
        return f"--launch-us must be >= 0, got {args.launch_us}"
    if args.load_ms is not None and args.load_ms < 0:
        return f"--load-ms must be >= 0, got {args.load_ms}"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--genotype" or a.startswith("--genotype=") for a in argv):
        # a derived network's latency / multiply-adds / parameters (issue 25): its own parser
        from fastadl.budget.cli import main as network_cost
        from fastadl.train.model import load_genotype

        return network_cost(argv, load_genotype)
    args = build_parser().parse_args(argv)

    try:
        cfg = resolve(args.preset, overrides_from(args, SearchConfig))
    except USER_ERRORS as e:
        return fail(str(e))
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    if problem := _flag_problem(args, routes, gpus):
        return fail(problem)
    try:
        val_size, val_images = _validation_args(args, cfg.data)
    except ValueError as e:
        return fail(str(e))
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
    from fastadl.runtime.distributed import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as e:
        return fail(str(e))
    iters = args.time_iters if args.time_iters is not None else (3 if device.type == "cuda" else 0)
    if iters < 0:
        return fail(f"--time-iters must be >= 0, got {iters}")
    from fastadl.diagnostics.overheads import load_ms_per_image

    load_ms, load_source = load_ms_per_image(cfg, args.load_ms)
    run = CostRun(cfg, args.preset, images, val_images, val_size, classes, routes, gpus,
                  args.launch_us, load_ms, iters, device, load_source)  # fmt: skip
    run_cost(run, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
