"""``python -m fastadl.selfcheck``: the command to run first on a new machine.

    python -m fastadl.selfcheck                    # this machine's default device
    python -m fastadl.selfcheck --device cuda:1    # one GPU of several
    python -m fastadl.selfcheck --quick            # tiny shapes (on CPU: triton interpreted)

Every backend available on the device is compared with ``reference`` — one edge at the paper's
four trellis levels, a cell, a small SuperNet in training and eval mode — on outputs, every
gradient (inputs, op weights, α, β) and the BatchNorm running statistics, in float32 and under
bfloat16 autocast; and the search's own iteration (fastadl/search/architect.py's
SearchIteration: FlatSGD weight step, α/β step, watch read, TF32 setting) in float32, bf16 and
fp16 with GradScaler. Then an edge, a cell and that iteration in each precision are timed per
backend. It prints a table, what ``auto`` runs on the device (a search cell: the
cell-level path, on C++ kernels on CPU and ATen ops on CUDA; a lone edge: triton or fused;
fastadl/ops/dispatch.py::auto_summary) and PASS or FAIL, exit status 0 or 1.

Everything goes through the public modules (MixedOp, SearchCell, SuperNet with ``backend=``),
so whatever fast path sits behind them is what is checked. A triton failure is recorded for
the device: ``auto`` will not pick triton there (fastadl/ops/triton/check.py), in this process
or later ones, until a self-check passes again.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from fastadl.runtime.cli import command_parser, fail

PAPER_EDGES = {  # docs/METHOD.md §2: batch 2, 321² crops, F = 8 → C = 8·s/4 at level s
    "s4": (2, 8, 81, 81),
    "s8": (2, 16, 41, 41),
    "s16": (2, 32, 21, 21),
    "s32": (2, 64, 11, 11),
}


@dataclass(frozen=True)
class Plan:
    """What to check and time. Sizes are decisions (the issue names only the edge shapes)."""

    edges: dict[str, tuple[int, int, int, int]]
    cell: tuple[int, int, tuple[int, int, int]]  # C, blocks, (N, H, W)
    net: object  # NetSpec: the SuperNet compared (train and eval)
    iteration: object  # NetSpec: the SuperNet whose search iteration is timed
    timed_edge: str  # key of ``edges``
    reps: tuple[int, int, int]  # timing repetitions: edge, cell, iteration


def make_plan(quick: bool, cuda: bool, reps: int | None):
    from fastadl.diagnostics.workloads import NetSpec

    if quick:  # tiny: the Triton interpreter runs these in about a minute on one CPU core
        net = NetSpec(1, 2, 1, 2, 2, 9, 11)  # one block: 2 edges per cell, stem to heads
        plan = Plan({"odd 2×3×5×6": (2, 3, 5, 6), "1×4×3×3": (1, 4, 3, 3)}, (3, 2, (2, 5, 6)),
                    net, net, "odd 2×3×5×6", (3, 3, 2))  # fmt: skip
    else:
        # the cell of the paper's s8 level; a 3-layer SuperNet on an odd-sized batch; the
        # iteration timed is the paper's on CUDA and the tiny preset's network on CPU
        paper = NetSpec(12, 8, 5, 19, 2, 321, 321)
        tiny = NetSpec(4, 4, 3, 6, 2, 64, 64)
        plan = Plan({f"{k} {'×'.join(map(str, v))}": v for k, v in PAPER_EDGES.items()},
                    (16, 5, (2, 41, 41)), NetSpec(3, 4, 3, 3, 2, 33, 35),
                    paper if cuda else tiny, "s4 2×8×81×81", (20, 10, 3))  # fmt: skip
    if reps is not None:
        plan = Plan(**{**plan.__dict__, "reps": (reps, reps, reps)})
    return plan


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "python -m fastadl.selfcheck",
        "Check every mixed-op backend on this device against the reference (outputs, "
        "every gradient, BatchNorm statistics; fp32 and bf16; the search's own iteration also "
        "in fp16 with GradScaler) and time an edge, a cell and the search iteration per "
        "backend; say what auto runs on this device. Exit status 0 = PASS, 1 = FAIL.",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes instead of the paper's edge shapes and a small SuperNet; on CPU this "
        "also runs the triton backend through Triton's interpreter (not timed)",
    )
    p.add_argument(
        "--reps", type=int, help="timing repetitions (default: 20 edge, 10 cell, 3 iteration)"
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's; on a busy shared machine 1 times far more "
        "steadily)",
    )
    p.add_argument("--no-timing", action="store_true", help="compare only, time nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reps is not None and args.reps < 1:
        return fail(f"--reps must be >= 1, got {args.reps}")
    if args.threads is not None and args.threads < 1:
        return fail(f"--threads must be >= 1, got {args.threads}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu")
            if args.device == "auto"
            else args.device
        )
    except RuntimeError as e:
        return fail(f"--device {args.device}: {e}")
    if device.type not in ("cpu", "cuda"):
        return fail(f"--device {args.device}: the self-check runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        return fail(
            f"--device {args.device}: CUDA is not available to this torch ({torch.__version__})"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        return fail(f"--device {args.device}: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type == "cpu" and args.quick and "fastadl.kernels.triton.nhwc" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported
    if device.type == "cuda":
        torch.cuda.set_device(device)

    from fastadl.diagnostics.report import run_selfcheck

    plan = make_plan(args.quick, device.type == "cuda", args.reps)
    ok = run_selfcheck(device, plan, args.quick, not args.no_timing, not args.no_progress)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
