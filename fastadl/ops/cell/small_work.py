"""One intra-op thread for the cell path's calls on small maps.

On the small maps of a search (2²-16² at the anchor setting) a cell's ops are microseconds
each, and an OpenMP fork/join per op costs as much as the op; on a busy machine a second
thread that is descheduled makes every parallel region wait for it. Measured per cell (C, H),
forward + backward on 3 paths, 1 vs 2 threads on the project's 2-core CPU: no gain from the
second thread at N·C·H·W ≤ 4,096 values per path (8@16², 16@8², 32@4², 64@2²), 1.1x at 8,192
(64@8²), 1.5x at 65,536 (8@64²) (docs/PERFORMANCE.md). So below SMALL_WORK_VALUES a cell's
forward and backward run on one thread; the threads are restored after each call.
"""

from __future__ import annotations

import contextlib
import functools

import torch

SMALL_WORK_VALUES = 8192  # values per path (N·C·H·W) below which a cell runs single-threaded


@functools.cache
def _openmp() -> bool:
    """Whether ATen parallelises with OpenMP, where the thread count may change at any time
    (the native thread pool refuses set_num_threads once parallel work has started)."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` intra-op threads, then restore the count it found."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def threads_for(values: int, device: torch.device):
    """Run the block with one intra-op thread if ``values`` is below SMALL_WORK_VALUES and
    ``device`` is the CPU; otherwise leave the thread count alone."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1 or values >= SMALL_WORK_VALUES or not _openmp():
        yield
        return
    with torch_threads(1):
        yield
