"""Timing closures side by side: interleaved repetitions, medians (a shared machine drifts)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA launches return before the kernels finish)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    steps: dict[str, Callable[[], None]], reps: int, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per call of each closure, the closures taking turns every repetition
    (in rotating order), so drift of a shared machine hits all of them alike. Each closure
    must finish its own work (synchronize inside on CUDA)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}
