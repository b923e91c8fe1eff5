"""Timing on a device: clocks, threads, the allocator's state, medians of repeated calls."""

from __future__ import annotations

import contextlib
import ctypes
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

WARMUP, REPEATS = 3, 15
BUDGET_S = 4.0  # a slow call is repeated fewer times: about this long, 3 calls at least
HEAP_SETTLE_BYTES = 32 * 2**20
_HEAP_SETTLED = False
# "wall": elapsed time, what a user waits. "cpu": the calling thread's CPU time, which a busy
# machine's other processes do not inflate (preemption is not counted); with one intra-op
# thread on a CPU it is the latency the same machine would show unloaded.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


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


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """glibc's malloc with a fixed mmap threshold and no trimming (32 MiB each) while timing.

    Why: called again and again alone, a piece that frees more than twice its largest buffer
    has the heap's top trimmed and pays page faults to grow it back on every call, which a
    network, whose many buffers keep the heap in use, does not (the stem of the tiny model at
    256×256 took 1.7× longer alone). Fixed thresholds remove that artefact from pieces and
    networks alike. The settings stay for the process (glibc cannot report the old ones);
    elsewhere than glibc this does nothing."""
    global _HEAP_SETTLED
    if not _HEAP_SETTLED:
        try:
            libc = ctypes.CDLL("libc.so.6")
            # mallopt(M_TRIM_THRESHOLD = -1 / M_MMAP_THRESHOLD = -3, bytes)
            libc.mallopt(-1, HEAP_SETTLE_BYTES)
            libc.mallopt(-3, HEAP_SETTLE_BYTES)
        except (OSError, AttributeError):
            pass
        _HEAP_SETTLED = True
    yield


def sync_of(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def median_ms(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    clock: str = "wall",
) -> float:
    """Median time of ``fn()`` in milliseconds over ``repeats`` calls (fewer, 3 at least, when
    they would take over BUDGET_S) after ``warmup``, on ``clock`` (CLOCKS)."""
    sync, now = sync_of(device), CLOCKS[clock]
    for _ in range(max(1, warmup)):
        start = now()
        fn()
        sync()
    repeats = min(repeats, max(3, int(BUDGET_S / max(now() - start, 1e-9))))
    times = []
    for _ in range(max(1, repeats)):
        start = now()
        fn()
        sync()
        times.append(now() - start)
    return statistics.median(times) * 1e3


def runnable(
    module: nn.Module, shapes: Sequence[Sequence[int]], device: torch.device, dtype: torch.dtype
) -> Callable[[], object]:
    """module (eval, on device/dtype) called on fixed random inputs of ``shapes``."""
    module = module.to(device=device, dtype=dtype).eval()
    xs = random_inputs(shapes, device, dtype)
    return lambda: module(*xs)


def random_inputs(
    shapes: Sequence[Sequence[int]], device: torch.device, dtype: torch.dtype
) -> list[torch.Tensor]:
    """Fixed (seeded) standard-normal tensors of ``shapes``."""
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(*s, generator=gen).to(device=device, dtype=dtype) for s in shapes]


def interleaved_medians_ms(
    fns: Sequence[Callable[[], object]],
    device: torch.device,
    rounds: int = REPEATS,
    clock: str = "wall",
) -> list[float]:
    """Median time (ms) of each of ``fns``, timed in turn, one call each per round, after one
    warm-up round: a change in the machine's load meets every function alike, which keeps
    their ranking (a comparison of networks) honest on a busy machine."""
    sync, now = sync_of(device), CLOCKS[clock]
    times: list[list[float]] = [[] for _ in fns]
    for r in range(rounds + 1):
        for i, fn in enumerate(fns):
            start = now()
            fn()
            sync()
            if r:
                times[i].append(now() - start)
    return [statistics.median(t) * 1e3 for t in times]
