"""A CostTable for a model configuration and input size: latency measured on a device, or
multiply-adds and parameters counted, from the same pieces (pieces.py).

Latency: each piece in eval mode under inference_mode, on random inputs of its shapes, after a
warm-up; the median of ``repeats`` timed calls; with torch's intra-op threads set to
``threads`` (restored after). Tables are cached (store.py) by device name, torch version,
model sizes, input size, dtype, threads and runtime, so a second call reads the file.
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from fastadl.budget.pieces import Piece, full_config, iter_pieces
from fastadl.budget.store import load_table, save_table
from fastadl.budget.table import CostTable
from fastadl.nn.derived.flops import multiply_adds_on

UNITS = ("ms", "GMACs", "Mparams")
RUNTIMES = ("eager",)  # the exported package (--runtime export) is not modelled yet
WARMUP, REPEATS = 3, 15


def device_name(device: torch.device | str) -> str:
    """The CPU's model string or the CUDA device's name (what a table is cached by)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch.set_num_threads(threads) inside, the previous count restored after."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def median_ms(
    fn: Callable[[], object], device: torch.device, warmup: int = WARMUP, repeats: int = REPEATS
) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls after ``warmup``."""
    sync = _sync(device)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def runnable(
    module: nn.Module, shapes: Sequence[Sequence[int]], device: torch.device, dtype: torch.dtype
) -> Callable[[], object]:
    """module (eval, on device/dtype) called on fixed random inputs of ``shapes``."""
    module = module.to(device=device, dtype=dtype).eval()
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(*s, generator=gen).to(device=device, dtype=dtype) for s in shapes]
    return lambda: module(*xs)


def piece_cost(
    piece: Piece,
    unit: str,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
) -> float:
    """One piece's cost in ``unit``."""
    if unit == "GMACs":
        return multiply_adds_on(piece.module, piece.inputs) / 1e9
    if unit == "Mparams":
        return sum(p.numel() for p in piece.module.parameters()) / 1e6
    fn = runnable(piece.module, piece.inputs, device, dtype)
    with torch.inference_mode():
        return median_ms(fn, device, repeats=repeats)


def table_context(
    model_kwargs: Mapping[str, object],
    size: Sequence[int],
    unit: str,
    device: torch.device,
    threads: int,
    dtype: torch.dtype,
    runtime: str,
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
        )
    return json.loads(json.dumps(context))


def check_request(size: Sequence[int], unit: str, runtime: str, threads: int) -> None:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r} is not supported (yet); choose from {RUNTIMES}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with H, W >= 1, got {tuple(size)}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")


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
) -> CostTable:
    """The CostTable of the derived networks of ``model_kwargs`` (pieces.py's configuration)
    at input ``size`` (H, W): "ms" measures on ``device``, "GMACs" and "Mparams" count.
    Cached under cache_root()/budget unless ``cache`` is False."""
    check_request(size, unit, runtime, threads)
    device = torch.device(device)
    context = table_context(model_kwargs, size, unit, device, threads, dtype, runtime)
    if cache and (table := load_table(context)) is not None:
        return table
    parts: dict[str, dict] = {"link": {}, "op": {}, "head": {}}
    fixed = 0.0
    with intra_op_threads(threads):
        for kind, key, piece in iter_pieces(model_kwargs, size):
            value = piece_cost(piece, unit, device, dtype, repeats)
            if kind == "fixed":
                fixed = value
            else:
                parts[kind][key] = value
    table = CostTable(unit, fixed, parts["link"], parts["op"], parts["head"], context)
    if cache:
        save_table(table)
    return table


def measure_latency(
    model: nn.Module,
    size: Sequence[int],
    device: torch.device | str = "cpu",
    threads: int = 1,
    dtype: torch.dtype = torch.float32,
    repeats: int = REPEATS,
    in_channels: int = 3,
) -> float:
    """Median end-to-end latency (ms) of ``model`` on a (1, in_channels, H, W) input, measured
    as the pieces are (eval, inference_mode, warm-up, ``threads``). The model is left in eval
    mode on ``device``."""
    device = torch.device(device)
    fn = runnable(model, [(1, in_channels, *size)], device, dtype)
    with intra_op_threads(threads), torch.inference_mode():
        return median_ms(fn, device, repeats=repeats)
