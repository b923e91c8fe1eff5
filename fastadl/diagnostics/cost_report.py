"""The cost model's run and report (``python -m fastadl.cost``; flags in fastadl/cost.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from fastadl.diagnostics.counting import Counts
from fastadl.diagnostics.gpus import GPUS, GRAPH_LAUNCH_US, step_seconds
from fastadl.diagnostics.measure import ROUTES, measure_pieces
from fastadl.diagnostics.overheads import (
    loading_seconds,
    optimizer_counts,
    validation_forwards,
    validation_spec,
)
from fastadl.diagnostics.pieces import iteration_flops, iteration_pieces
from fastadl.diagnostics.workloads import NetSpec

DAY = 86400.0
PAPER_DAYS = 3.0  # the paper: about 3 days on one P100 (docs/METHOD.md §3)
GPU_ROUTES = ("cuda", "reference")  # the routes a GPU runs (cpu: the C++ kernels, host only)


@dataclass(frozen=True)
class CostRun:
    cfg: object  # SearchConfig
    preset: str
    train_images: int
    val_images: int
    val_size: tuple[int, int] | None  # (H, W); None: the dataset's, resized
    classes: int
    routes: list[str]
    gpus: list[str]
    launch_us: float
    load_ms: float
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


@dataclass
class RouteCounts:
    """One route's counts: per step kind of the pieces, the optimizers', a validation forward's."""

    steps: dict[str, Counts]
    weight_optimizer: Counts
    arch_optimizer: Counts
    validation: Counts


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


def count_route(run: CostRun, shape: NetSpec, val: NetSpec, route: str, tick) -> RouteCounts:
    """Every count of ``route``: the distinct pieces of a training iteration and of a
    validation forward, and the optimizer steps."""
    steps = measure_pieces(shape, iteration_pieces(shape), route, progress=tick)
    forward = measure_pieces(val, iteration_pieces(val), route, ("forward",), progress=tick)
    w_opt, a_opt = optimizer_counts(shape, run.cfg, route)
    return RouteCounts(steps, w_opt, a_opt, forward["forward"])


def _describe(routes: list[str]) -> None:
    from fastadl.ops.dispatch import cell_path_ops

    cpu = cell_path_ops(torch.device("cpu"))
    what = {
        "cuda": "search cells on the cell-level path, ATen ops (as on CUDA), eager",
        "cpu": f"search cells on the cell-level path, {cpu} (as on this CPU)",
        "reference": "the reference: every edge as the literal sum of its ops",
    }
    for r in routes:
        print(f"  {r}: {what[r]}")


def _iteration_table(run: CostRun, counts: dict[str, RouteCounts], flops, val: NetSpec) -> None:
    routes = list(counts)
    val_flops = iteration_flops(iteration_pieces(val)).weight_forward

    def row(name, value):
        return [name, *(value(r) for r in routes)]

    def both(r):
        return counts[r].steps["weight"] + counts[r].steps["arch"]

    print("\nper search iteration (weight step + α/β step), counted")
    _table(["", *routes], [
        row("FLOPs needed (analytic)", lambda r: _fmt(flops[r].iteration, "FLOP")),
        row("FLOPs as run (flop_counter)", lambda r: _fmt(both(r).flops, "FLOP")),
        row("minimum bytes moved", lambda r: _fmt(both(r).bytes, "B")),
        row("saved activations (weight step)", lambda r: _fmt(counts[r].steps["weight"].saved, "B")),
        row("kernel launches: forward + backward", lambda r: f"{both(r).launches:,}"),
        row("kernel launches: optimizer steps", lambda r: f"{(counts[r].weight_optimizer + counts[r].arch_optimizer).launches:,}"),
        row(f"validation forward {val.height}×{val.width}: FLOPs", lambda r: _fmt(val_flops, "FLOP")),
        row("validation forward: kernel launches", lambda r: f"{counts[r].validation.launches:,}"),
    ])  # fmt: skip
    if "cpu" in routes:
        print("(cpu: launches = ATen operators + C++ kernel calls; its FLOPs as run and bytes "
              "count the ATen operators only)")  # fmt: skip


def whole_search(run: CostRun, c: RouteCounts, flops, val_flops: int, gpu, launch_us) -> dict:
    """Seconds per line of the whole search on ``gpu`` (a lower bound per step: roofline at
    peak plus ``launch_us`` per launch), and the per-epoch total of an epoch with α/β steps."""
    cfg = run.cfg
    sched = schedule(cfg, run.train_images)
    val_n = validation_forwards(cfg, run.val_images)

    def t(flop, counts: Counts) -> float:
        return step_seconds(flop, counts.bytes, counts.launches, gpu, launch_us)

    w = t(flops.weight_forward + flops.weight_backward, c.steps["weight"])
    a = t(flops.arch_forward + flops.arch_backward, c.steps["arch"])
    opt_w, opt_a = t(0, c.weight_optimizer), t(0, c.arch_optimizer)
    v = t(val_flops, c.validation)
    # images loaded: a trainA batch per step, a trainB batch per α/β step, the validation set
    val_read = min(run.val_images, cfg.val_images or run.val_images)
    images = (sched.weight_steps + sched.arch_steps) * cfg.batch_size + cfg.epochs * val_read
    lines = {
        "weight steps": sched.weight_steps * w,
        "α/β steps": sched.arch_steps * a,
        "optimizer steps": sched.weight_steps * opt_w + sched.arch_steps * opt_a,
        "validation": cfg.epochs * val_n * v,
        "data loading*": loading_seconds(images, run.load_ms, cfg.workers),
    }
    per_step = sched.steps_per_epoch
    epoch_images = per_step * 2 * cfg.batch_size + val_read
    epoch = per_step * (w + a + opt_w + opt_a) + val_n * v
    epoch += loading_seconds(epoch_images, run.load_ms, cfg.workers)
    return {**lines, "per epoch (α/β)": epoch, "whole search": sum(lines.values())}


def _projection(run: CostRun, route: str, c: RouteCounts, flops, val: NetSpec) -> None:
    val_flops = iteration_flops(iteration_pieces(val)).weight_forward
    table = {}
    for gpu in run.gpus:
        for label, us in ((f"{gpu} ({GPUS[gpu].name})", run.launch_us),
                          (f"{gpu}, CUDA graphs", GRAPH_LAUNCH_US)):  # fmt: skip
            table[label] = whole_search(run, c, flops, val_flops, GPUS[gpu], us)
    longest = max(lines["whole search"] for lines in table.values())
    # one unit for the whole table, the one its longest figure reads best in
    unit, size = next(u for u in (("hours", 3600.0), ("minutes", 60.0), ("seconds", 1.0))
                      if longest >= 2 * u[1] or u[1] == 1.0)  # fmt: skip
    print(f"\nprojected search on the {route} route, in {unit} (roofline at peak + "
          f"{run.launch_us:g} µs per launch eager, {GRAPH_LAUNCH_US:g} µs with CUDA graphs); "
          f"the paper: {PAPER_DAYS:g} days = {PAPER_DAYS * 24:g} hours on one P100")  # fmt: skip
    rows = [[label, *(f"{s / size:.2f}" for s in lines.values())] for label, lines in table.items()]
    _table(["GPU", *next(iter(table.values()))], rows)
    cfg = run.cfg
    print(f"counted: the steps' pieces, optimizer steps, validation ({run.val_images} images "
          f"at {val.height}×{val.width}, batch {val.batch}, after each epoch); *estimated: data "
          f"loading at {run.load_ms:g} ms per image per worker, {max(cfg.workers, 1)} "
          "worker(s), added as if it did not overlap the steps (--load-ms)")  # fmt: skip


def _timed(run: CostRun, shape: NetSpec, progress: bool):
    """route → (seconds per weight step, per α/β step, peak MiB or None), timed for real on
    the routes ``run.device`` runs (cuda on CUDA, cpu on a CPU, and the reference)."""
    from fastadl.diagnostics.timing import interleaved_medians
    from fastadl.diagnostics.workloads import search_iteration

    here = [r for r in run.routes if r in ("reference", run.device.type)]
    out = {}
    for r in tqdm(here, desc="timing", disable=None if progress else True, leave=False):
        net = shape.build(ROUTES[r]).to(run.device)
        both = search_iteration(net, shape, run.device, arch=True)
        weight = search_iteration(net, shape, run.device, arch=False)
        if run.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(run.device)
        med = interleaved_medians({"both": both, "weight": weight}, run.time_iters, warmup=1)
        peak = (
            torch.cuda.max_memory_allocated(run.device) / 2**20
            if run.device.type == "cuda"
            else None
        )
        out[r] = (med["weight"], max(med["both"] - med["weight"], 0.0), peak)
        del net, both, weight
    return out


def run_cost(run: CostRun, progress: bool = True) -> dict:
    cfg = run.cfg
    shape = NetSpec(cfg.layers, cfg.filter_multiplier, cfg.block_multiplier, run.classes,
                    cfg.batch_size, cfg.crop_size, cfg.crop_size)  # fmt: skip
    val = validation_spec(shape, cfg, run.val_size)
    sched = schedule(cfg, run.train_images)
    print(
        f"fastadl cost model: preset {run.preset} — L={shape.layers} F={shape.filter_multiplier} "
        f"B={shape.block_multiplier}, batch {shape.batch} of {shape.height}×{shape.width} crops, "
        f"{shape.classes} classes"
    )
    print(
        f"search: {cfg.epochs} epochs × {sched.steps_per_epoch} steps = {sched.weight_steps:,} "
        f"weight steps and {sched.arch_steps:,} α/β steps ({run.train_images:,} training images "
        f"split in two halves); routes:"
    )
    _describe(run.routes)
    n_pieces = len(iteration_pieces(shape)) + len(iteration_pieces(val))
    bar = tqdm(total=n_pieces * len(run.routes), desc="counting",
               disable=None if progress else True, leave=False)  # fmt: skip
    counts = {r: count_route(run, shape, val, r, lambda: bar.update()) for r in run.routes}
    bar.close()
    # recompute: the cell path's backward reruns the cells' forward (--recompute)
    flops = {r: iteration_flops(iteration_pieces(shape), cfg.recompute and r != "reference")
             for r in run.routes}  # fmt: skip
    _iteration_table(run, counts, flops, val)
    for r in (r for r in run.routes if r in GPU_ROUTES):
        _projection(run, r, counts[r], flops[r], val)

    timed = {}
    if run.time_iters:
        timed = _timed(run, shape, progress)
        print(f"\ntimed on {run.device} ({run.time_iters} iterations, median), extrapolated "
              "(steps only)")  # fmt: skip
        rows = []
        for r, (tw, ta, peak) in timed.items():
            total = sched.weight_steps * tw + sched.arch_steps * ta
            mem = f"{peak:.0f} MiB" if peak is not None else "-"
            rows.append([r, f"{tw * 1e3:.1f} ms", f"{ta * 1e3:.1f} ms", _days(total), mem])
        _table(["route", "weight step", "α/β step", "whole search", "peak memory"], rows)
    return {"schedule": sched, "flops": flops, "counts": counts, "timed": timed,
            "pieces": n_pieces}  # fmt: skip
