"""GPU telemetry for the loops: memory, utilisation and power from NVML (nvidia-ml-py).

On a CUDA device, ``Telemetry`` samples the GPU the process runs on at most every
``interval_s`` seconds into ``telemetry.jsonl`` and gives the progress bar a short
``gpu`` entry (memory used, utilisation, power). Without a GPU, without NVML, or once an NVML
call fails, it is a silent no-op: no file, and the progress bar shows the process's resident
memory instead. Sampling never touches the computation, so it cannot change a run's results.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import torch

from fastadl.runtime.rundir.metrics_log import MetricsLog

SAMPLE_SECONDS = 10.0  # a line every 10 s: ~8,600 a day, fine for a days-long search


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; peak RSS elsewhere; 0 if unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return 0


class GpuMonitor:
    """One NVML device handle; ``read()`` returns the sample's fields (raises on NVML errors)."""

    def __init__(self, nvml: Any, handle: Any, index: int) -> None:
        self.nvml, self.handle, self.index = nvml, handle, index

    def read(self) -> dict[str, float]:
        mem = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
        util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
        power_mw = self.nvml.nvmlDeviceGetPowerUsage(self.handle)
        return {
            "gpu": self.index,
            "memory_used_mib": mem.used / 2**20,
            "memory_total_mib": mem.total / 2**20,
            "utilization_pct": float(util.gpu),
            "power_w": power_mw / 1000.0,
        }

    def close(self) -> None:
        # shutting down a library that already failed has nothing to report
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


def gpu_monitor(device: torch.device, nvml: Any = None) -> GpuMonitor | None:
    """A monitor of ``device``'s GPU, or None (not CUDA, no nvidia-ml-py, NVML failing)."""
    if device.type != "cuda":
        return None
    try:
        if nvml is None:
            import pynvml as nvml  # the nvidia-ml-py package
        nvml.nvmlInit()
    except Exception:  # ImportError, NVMLError (no driver), OSError (no libnvidia-ml)
        return None
    index = device.index if device.index is not None else 0
    try:
        handle = _handle_of(nvml, index)
    except Exception:
        GpuMonitor(nvml, None, index).close()
        return None
    return GpuMonitor(nvml, handle, index)


def _handle_of(nvml: Any, index: int) -> Any:
    """NVML's handle for CUDA device ``index``: by UUID, since NVML numbers all GPUs while CUDA
    numbers only the visible ones (CUDA_VISIBLE_DEVICES); by index where torch has no UUID."""
    try:
        uuid = torch.cuda.get_device_properties(index).uuid
        return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
    except Exception:
        return nvml.nvmlDeviceGetHandleByIndex(index)


class Telemetry:
    """Samples a GpuMonitor into ``path`` (None: don't write) and formats the progress entry."""

    def __init__(
        self,
        monitor: GpuMonitor | None,
        path: Path | None,
        interval_s: float | None = None,
        clock=time.monotonic,
    ) -> None:
        self.monitor = monitor
        self.log = MetricsLog(path) if (monitor is not None and path is not None) else None
        self.interval_s = SAMPLE_SECONDS if interval_s is None else interval_s
        self.clock = clock
        self._last: float | None = None
        self._latest: dict[str, float] | None = None

    @classmethod
    def start(cls, device: torch.device, path: Path | None) -> Telemetry:
        return cls(gpu_monitor(device), path)

    def sample(self, step: int) -> None:
        """Take a sample if ``interval_s`` has passed since the last one (first call: always)."""
        if self.monitor is None:
            return
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            return
        self._last = now
        try:
            sample = self.monitor.read()
        except Exception:  # the driver went away mid-run: stop sampling, keep training
            self.close()
            return
        if torch.cuda.is_available():
            sample["torch_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        self._latest = sample
        if self.log is not None:
            self.log.append({"time": time.time(), "step": step, **sample})

    def postfix(self) -> dict[str, str]:
        """``{"gpu": "12.3G 87% 251W"}`` from the latest sample, else ``{"rss": "1.2G"}``."""
        s = self._latest
        if s is None:
            return {"rss": f"{rss_bytes() / 2**30:.1f}G"}
        return {
            "gpu": f"{s['memory_used_mib'] / 1024:.1f}G {s['utilization_pct']:.0f}% "
            f"{s['power_w']:.0f}W"
        }

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = None
        self._latest = None
