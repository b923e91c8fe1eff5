"""The cost model's run and report (``python -m fastadl.cost``; flags in fastadl/cost.py)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from tqdm import tqdm

from fastadl.diagnostics.counting import Counts
from fastadl.diagnostics.gpus import GPUS, GRAPH_LAUNCH_US, step_seconds
from fastadl.diagnostics.measure import measure_pieces
from fastadl.diagnostics.pieces import iteration_flops, iteration_pieces
from fastadl.diagnostics.workloads import NetSpec

DAY = 86400.0
PAPER_DAYS = 3.0  # the paper: about 3 days on one P100 (docs/METHOD.md §3)


@dataclass(frozen=True)
class CostRun:
    cfg: object  # SearchConfig
    preset: str
    train_images: int
    classes: int
    backends: list[str]
    gpus: list[str]
    launch_us: float
    time_iters: int
    device: torch.device


@dataclass(frozen=True)
class Schedule:
    steps_per_epoch: int
    weight_steps: int
    arch_steps: int


def schedule(cfg, train_images: int) -> Schedule:
    """Steps of the whole search (one process): the smaller half of the trainA/trainB split in
    full batches per epoch, α/β steps from ``arch_start_epoch`` on (fastadl/search/searcher.py)."""
    from fastadl.runtime.loading import batches_per_epoch

    per_epoch = batches_per_epoch(train_images // 2, cfg.batch_size)
    return Schedule(
        per_epoch, per_epoch * cfg.epochs, per_epoch * (cfg.epochs - cfg.first_arch_epoch)
    )


def _fmt(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def _days(seconds: float) -> str:
    """A duration in the unit that reads best: days, hours, minutes or seconds."""
    for unit, size in (("d", DAY), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size / 10 if unit == "d" else seconds >= size:
            return f"{seconds / size:.2f} {unit}"
    return f"{seconds:.1f} s"


def _table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def _timed(run: CostRun, shape: NetSpec, backends: list[str], progress: bool):
    """backend → (seconds per weight step, per α/β step, peak MiB or None), timed for real."""
    from fastadl.diagnostics.timing import interleaved_medians
    from fastadl.diagnostics.workloads import search_iteration

    spec = shape
    out = {}
    for b in tqdm(backends, desc="timing", disable=None if progress else True, leave=False):
        if b == "triton" and run.device.type != "cuda":
            continue
        net = spec.build(b).to(run.device)
        both = search_iteration(net, spec, run.device, arch=True)
        weight = search_iteration(net, spec, run.device, arch=False)
        if run.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(run.device)
        med = interleaved_medians({"both": both, "weight": weight}, run.time_iters, warmup=1)
        peak = (
            torch.cuda.max_memory_allocated(run.device) / 2**20
            if run.device.type == "cuda"
            else None
        )
        out[b] = (med["weight"], max(med["both"] - med["weight"], 0.0), peak)
        del net, both, weight
    return out


def run_cost(run: CostRun, progress: bool = True) -> dict:
    cfg = run.cfg
    shape = NetSpec(cfg.layers, cfg.filter_multiplier, cfg.block_multiplier, run.classes,
                        cfg.batch_size, cfg.crop_size, cfg.crop_size)  # fmt: skip
    sched = schedule(cfg, run.train_images)
    pieces = iteration_pieces(shape)
    backends = list(run.backends)
    skipped = ""
    if "triton" in backends and importlib.util.find_spec("triton") is None:
        backends.remove("triton")
        skipped = "triton: not installed"
    print(
        f"fastadl cost model: preset {run.preset} — L={shape.layers} F={shape.filter_multiplier} "
        f"B={shape.block_multiplier}, batch {shape.batch} of {shape.height}×{shape.width} crops, "
        f"{shape.classes} classes"
    )
    print(
        f"search: {cfg.epochs} epochs × {sched.steps_per_epoch} steps = {sched.weight_steps:,} "
        f"weight steps and {sched.arch_steps:,} α/β steps ({run.train_images:,} training images "
        f"split in two halves)"
    )
    bar = tqdm(
        total=len(pieces) * len(backends),
        desc="counting",
        disable=None if progress else True,
        leave=False,
    )
    counts: dict[str, dict[str, Counts]] = {}
    for b in backends:
        counts[b] = measure_pieces(shape, pieces, b, progress=lambda: bar.update())
    bar.close()
    flops = {b: iteration_flops(pieces, cfg.recompute and b == "fused") for b in backends}

    print("\nper search iteration (weight step + α/β step)")
    head = ["", *backends]
    rows = [
        ["FLOPs needed (analytic)", *(_fmt(flops[b].iteration, "FLOP") for b in backends)],
        ["FLOPs as run (flop_counter)", *(_fmt(counts[b]["weight"].flops + counts[b]["arch"].flops, "FLOP") for b in backends)],
        ["minimum bytes moved", *(_fmt(counts[b]["weight"].bytes + counts[b]["arch"].bytes, "B") for b in backends)],
        ["saved activations (weight step)", *(_fmt(counts[b]["weight"].saved, "B") for b in backends)],
        ["kernel launches", *(f"{counts[b]['weight'].launches + counts[b]['arch'].launches:,}" for b in backends)],
    ]  # fmt: skip
    _table(head, rows)
    if skipped:
        print(f"({skipped})")

    def whole(b: str, gpu: str, launch_us: float) -> float:
        f = flops[b]
        w, a = counts[b]["weight"], counts[b]["arch"]
        tw = step_seconds(
            f.weight_forward + f.weight_backward, w.bytes, w.launches, GPUS[gpu], launch_us
        )
        ta = step_seconds(
            f.arch_forward + f.arch_backward, a.bytes, a.launches, GPUS[gpu], launch_us
        )
        return sched.weight_steps * tw + sched.arch_steps * ta

    print(
        f"\nprojected whole search (roofline at peak + {run.launch_us:g} µs per launch; "
        f"with CUDA graphs {GRAPH_LAUNCH_US:g} µs); the paper: {PAPER_DAYS:g} days on one P100"
    )
    rows = []
    for gpu in run.gpus:
        rows.append(
            [f"{gpu} ({GPUS[gpu].name})", *(_days(whole(b, gpu, run.launch_us)) for b in backends)]
        )
        rows.append(
            [f"{gpu}, CUDA graphs", *(_days(whole(b, gpu, GRAPH_LAUNCH_US)) for b in backends)]
        )
    _table(["GPU", *backends], rows)

    timed = {}
    if run.time_iters:
        timed = _timed(run, shape, backends, progress)
        print(f"\ntimed on {run.device} ({run.time_iters} iterations, median), extrapolated")
        rows = []
        for b, (tw, ta, peak) in timed.items():
            total = sched.weight_steps * tw + sched.arch_steps * ta
            mem = f"{peak:.0f} MiB" if peak is not None else "-"
            rows.append([b, f"{tw * 1e3:.1f} ms", f"{ta * 1e3:.1f} ms", _days(total), mem])
        _table(["backend", "weight step", "α/β step", "whole search", "peak memory"], rows)
    return {"schedule": sched, "flops": flops, "counts": counts, "timed": timed}
