"""torchrun --max-restarts: a 2-process gloo search whose rank-1 worker is SIGKILLed mid-run is
restarted by torchrun, continues from the run directory's latest checkpoint by itself (same
command, same config) and ends bitwise where an uninterrupted 2-process run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastadl.runtime.rundir.checkpoint import load_checkpoint
from fastadl.runtime.rundir.metrics_log import read

# 16 synthetic 32×32 images: trainA/trainB of 8, 2 per rank and step → 2 steps an epoch.
FLAGS = [
    "--num-images", "16", "--image-size", "32", "--crop-size", "32", "--val-images", "4",
    "--layers", "2", "--filter-multiplier", "2", "--block-multiplier", "2", "--epochs", "3",
    "--arch-start-epoch", "1", "--batch-size", "2", "--backend", "reference", "--workers", "0",
    "--threads", "1", "--checkpoint-every", "1", "--device", "cpu", "--no-progress",
]  # fmt: skip


def _torchrun(run: Path, restarts: int) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        f"--max-restarts={restarts}", "--monitor-interval=0.2",
        "-m", "fastadl.search", *FLAGS, "--out", str(run),
    ]  # fmt: skip


def _workers(parent: int) -> dict[int, int]:
    """rank → pid of the worker processes torchrun ``parent`` started."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                out[int(item[5:])] = int(entry)
    return out


def _last_step(run: Path) -> int:
    try:
        return max((r["step"] for r in read(run / "metrics.jsonl")), default=0)
    except ValueError:  # a line being written
        return 0


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_killed_worker_is_restarted_and_the_run_equals_an_uninterrupted_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = subprocess.run(_torchrun(straight, 0), env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]

    proc = subprocess.Popen(
        _torchrun(killed, 1), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 300
        while _last_step(killed) < 3:  # mid-run, with checkpoints at steps 1, 2, 3
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.1)
        victim = _workers(proc.pid)[1]
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "holds a run of this config: continuing it" in text  # the restarted group resumed

    a, b = load_checkpoint(straight), load_checkpoint(killed)
    assert a["step"] == b["step"] == 6
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=0, msg=k)

    def steps(run):
        return [
            {k: v for k, v in r.items() if k != "images_per_s"} for r in read(run / "metrics.jsonl")
        ]

    assert steps(straight) == steps(killed)
