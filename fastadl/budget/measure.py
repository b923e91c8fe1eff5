"""A CostTable for a model configuration and input size: latency measured on a device, or
multiply-adds and parameters counted, from the same pieces (pieces.py).

Latency: each piece in eval mode under inference_mode, on random inputs of its shapes, after a
warm-up; the median of ``repeats`` timed calls; with torch's intra-op threads set to
``threads`` (restored after); then every piece is scaled by its kind's time inside a few
calibration networks (context.py, docs/BUDGET.md). Tables are cached (store.py) by device
name, torch version, model sizes, input size, dtype, threads, runtime and clock, so a second
call reads the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fastadl.budget.context import apply_factors, calibration_genotypes, in_context_factors
from fastadl.budget.pieces import Piece, build_network, full_config, iter_pieces
from fastadl.budget.store import load_table, save_table
from fastadl.budget.table import CostTable, genotype_cost
from fastadl.budget.timing import (
    CLOCKS,
    REPEATS,
    device_name,
    intra_op_threads,
    median_ms,
    runnable,
    settled_heap,
)
from fastadl.nn.derived.flops import multiply_adds_on

UNITS = ("ms", "GMACs", "Mparams")
RUNTIMES = ("eager",)  # the exported package (--runtime export) is not modelled yet


def piece_cost(
    piece: Piece,
    unit: str,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    clock: str = "wall",
) -> float:
    """One piece's cost in ``unit``."""
    if unit == "GMACs":
        return multiply_adds_on(piece.module, piece.inputs) / 1e9
    if unit == "Mparams":
        return sum(p.numel() for p in piece.module.parameters()) / 1e6
    fn = runnable(piece.module, piece.inputs, device, dtype)
    with settled_heap(), torch.inference_mode():
        return median_ms(fn, device, repeats=repeats, clock=clock)


def table_context(
    model_kwargs: Mapping[str, object],
    size: Sequence[int],
    unit: str,
    device: torch.device,
    threads: int,
    dtype: torch.dtype,
    runtime: str,
    clock: str = "wall",
) -> dict:
    """Where a table's figures hold (its cache key), in JSON form. Counts hold everywhere."""
    cfg = full_config(model_kwargs)
    context = {"unit": unit, "model": cfg, "size": [int(s) for s in size]}
    if unit == "ms":
        context.update(
            device=device_name(device),
            torch=torch.__version__,
            dtype=str(dtype).removeprefix("torch."),
            threads=threads,
            runtime=runtime,
            clock=clock,
        )
    return json.loads(json.dumps(context))


def check_request(
    size: Sequence[int], unit: str, runtime: str, threads: int, clock: str, device: torch.device
) -> None:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r} is not supported (yet); choose from {RUNTIMES}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with H, W >= 1, got {tuple(size)}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {tuple(CLOCKS)}, got {clock!r}")
    if clock == "cpu" and (device.type != "cpu" or threads != 1):
        raise ValueError("clock 'cpu' (the thread's CPU time) needs device cpu and threads 1")


def cost_table(
    model_kwargs: Mapping[str, object],
    size: Sequence[int],
    unit: str,
    device: torch.device | str = "cpu",
    threads: int = 1,
    dtype: torch.dtype = torch.float32,
    runtime: str = "eager",
    repeats: int = REPEATS,
    cache: bool = True,
    clock: str = "wall",
    calibrate: bool = True,
) -> CostTable:
    """The CostTable of the derived networks of ``model_kwargs`` (pieces.py's configuration)
    at input ``size`` (H, W): "ms" measures on ``device``, "GMACs" and "Mparams" count.
    Cached under cache_root()/budget unless ``cache`` is False. Latency pieces are timed
    alone, then scaled by their kind's time in context (context.py) unless ``calibrate`` is
    False."""
    device = torch.device(device)
    check_request(size, unit, runtime, threads, clock, device)
    context = table_context(model_kwargs, size, unit, device, threads, dtype, runtime, clock)
    context["calibrated"] = unit == "ms" and calibrate
    if cache and (table := load_table(context)) is not None:
        return table
    parts: dict[str, dict] = {"link": {}, "op": {}, "head": {}}
    fixed = 0.0
    with intra_op_threads(threads):
        for kind, key, piece in iter_pieces(model_kwargs, size):
            value = piece_cost(piece, unit, device, dtype, repeats, clock)
            if kind == "fixed":
                fixed = value
            else:
                parts[kind][key] = value
    table = CostTable(unit, fixed, parts["link"], parts["op"], parts["head"], context)
    if unit == "ms" and calibrate:
        table = calibrated(table, model_kwargs, size, device, dtype, threads, repeats, clock)
    if cache:
        save_table(table, context)
    return table


def measure_latency(
    model: nn.Module,
    size: Sequence[int],
    device: torch.device | str = "cpu",
    threads: int = 1,
    dtype: torch.dtype = torch.float32,
    repeats: int = REPEATS,
    in_channels: int = 3,
    clock: str = "wall",
) -> float:
    """Median end-to-end latency (ms) of ``model`` on a (1, in_channels, H, W) input, measured
    as the pieces are (eval, inference_mode, warm-up, ``threads``). The model is left in eval
    mode on ``device``."""
    device = torch.device(device)
    check_request(size, "ms", "eager", threads, clock, device)
    fn = runnable(model, [(1, in_channels, *size)], device, dtype)
    with settled_heap(), intra_op_threads(threads), torch.inference_mode():
        return median_ms(fn, device, repeats=repeats, clock=clock)


def calibrated(
    table: CostTable,
    model_kwargs: Mapping[str, object],
    size: Sequence[int],
    device: torch.device,
    dtype: torch.dtype,
    threads: int,
    repeats: int,
    clock: str,
) -> CostTable:
    """``table`` (pieces timed alone) scaled per kind to the pieces' time inside calibration
    networks (context.py), then as a whole so that it sums to those networks timed without
    the hooks that split them (the hooks cost time of their own)."""
    genotypes = calibration_genotypes(model_kwargs)
    timing = (device, dtype, threads, repeats, clock)
    factors = in_context_factors(table, genotypes, model_kwargs, size, *timing)
    predicted = sum(genotype_cost(apply_factors(table, factors), g) for g in genotypes)
    measured = sum(
        measure_latency(
            build_network(model_kwargs, g),
            size,
            device,
            threads,
            dtype,
            repeats,
            full_config(model_kwargs)["in_channels"],
            clock,
        )
        for g in genotypes
    )
    return apply_factors(table, factors, measured / predicted)
