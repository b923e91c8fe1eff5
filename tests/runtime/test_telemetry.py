"""GPU telemetry: NVML samples into telemetry.jsonl and the progress bar on GPU runs; a silent
no-op without a GPU, without nvidia-ml-py, or with an NVML that fails."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch
from small_runs import SMALL_TRAIN

from fastadl.runtime.rundir import telemetry
from fastadl.runtime.rundir.metrics_log import read
from fastadl.runtime.rundir.telemetry import GpuMonitor, Telemetry, gpu_monitor
from fastadl.train import cli as train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = [*SMALL_TRAIN, "--epochs", "1"]


class FakeNVML:
    """The few pynvml calls telemetry makes, with fixed readings (12 GiB used of 80, 87 %,
    251 W); ``fail_after`` makes reads raise like a driver that went away."""

    def __init__(self, fail_init: bool = False, fail_after: int | None = None) -> None:
        self.fail_init, self.fail_after, self.reads, self.shut = fail_init, fail_after, 0, False

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetHandleByUUID(self, uuid):
        raise RuntimeError("no such UUID")  # torch has no CUDA here: the index path is used

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def nvmlDeviceGetMemoryInfo(self, handle):
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise RuntimeError("GPU is lost")
        return SimpleNamespace(used=12 * 2**30, total=80 * 2**30, free=68 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetPowerUsage(self, handle):
        return 251_000  # milliwatts


def test_no_monitor_on_cpu_without_nvml_or_with_a_failing_nvml(monkeypatch):
    assert gpu_monitor(torch.device("cpu"), FakeNVML()) is None
    assert gpu_monitor(torch.device("cuda"), FakeNVML(fail_init=True)) is None
    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed
    assert gpu_monitor(torch.device("cuda")) is None


def test_gpu_samples_go_to_telemetry_jsonl_and_the_progress_entry(tmp_path):
    nvml = FakeNVML()
    monitor = gpu_monitor(torch.device("cuda", 0), nvml)
    assert isinstance(monitor, GpuMonitor) and monitor.handle == ("handle", 0)
    now = {"t": 0.0}
    tel = Telemetry(monitor, tmp_path / "telemetry.jsonl", interval_s=10, clock=lambda: now["t"])
    tel.sample(step=1)
    now["t"] = 5.0
    tel.sample(step=2)  # within the interval: no new sample
    now["t"] = 10.0
    tel.sample(step=3)
    records = read(tmp_path / "telemetry.jsonl")
    assert [r["step"] for r in records] == [1, 3]
    assert records[0]["memory_used_mib"] == 12 * 1024 and records[0]["power_w"] == 251.0
    assert records[0]["utilization_pct"] == 87.0 and records[0]["gpu"] == 0
    assert tel.postfix() == {"gpu": "12.0G 87% 251W"}
    tel.close()
    assert nvml.shut


def test_an_nvml_failure_mid_run_stops_sampling_silently(tmp_path):
    nvml = FakeNVML(fail_after=1)
    tel = Telemetry(gpu_monitor(torch.device("cuda"), nvml), tmp_path / "t.jsonl", interval_s=0)
    tel.sample(1)
    tel.sample(2)  # raises inside: swallowed, telemetry switches itself off
    tel.sample(3)
    assert [r["step"] for r in read(tmp_path / "t.jsonl")] == [1]
    assert set(tel.postfix()) == {"rss"}


def test_cpu_run_writes_no_telemetry_and_shows_rss(tmp_path, capsys):
    assert train.main([*SMALL, "--out", str(tmp_path / "run")]) == 0
    assert not (tmp_path / "run" / "telemetry.jsonl").exists()
    assert ", rss " in capsys.readouterr().err  # the progress line (stderr is no terminal here)


def test_gpu_run_writes_telemetry_jsonl_and_shows_memory(tmp_path, monkeypatch, capsys):
    # The loop asks telemetry.gpu_monitor for its device: hand it a fake GPU on this CPU run.
    fake = GpuMonitor(FakeNVML(), ("handle", 0), 0)
    monkeypatch.setattr(telemetry, "gpu_monitor", lambda device: fake)
    monkeypatch.setattr(telemetry, "SAMPLE_SECONDS", 0.0)
    assert train.main([*SMALL, "--out", str(tmp_path / "run")]) == 0
    records = read(tmp_path / "run" / "telemetry.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["memory_used_mib"] == 12 * 1024 for r in records)
    assert ", gpu 12.0G 87% 251W" in capsys.readouterr().err
