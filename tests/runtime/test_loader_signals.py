"""A group signal during a loader worker's start does not kill the worker (runtime/loading.py
DetachedLoader, runtime/preemption.py detach_from_stop_signals).

A worker leaves the process group in its init function; a scheduler's SIGTERM to the group
sent before that used to kill it, and the run then died on its next batch instead of
checkpointing (seen as a rare failure of the SIGTERM test under load). The child below widens
that window to a second and signals its own group inside it.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

CHILD = """
import os, signal, sys, time
import torch
from torch.utils.data import DataLoader
from fastadl.runtime.loading import DetachedLoader
from fastadl.runtime.preemption import detach_from_stop_signals

def slow_detach(worker_id):
    time.sleep(1.0)  # the window between the fork and leaving the group, widened
    detach_from_stop_signals(worker_id)

received = []
signal.signal(signal.SIGTERM, lambda *_: received.append("SIGTERM"))
loader_class = DetachedLoader if sys.argv[1] == "detached" else DataLoader
loader = loader_class(list(range(4)), batch_size=2, num_workers=1, worker_init_fn=slow_detach)
batches = iter(loader)
time.sleep(0.3)
os.killpg(0, signal.SIGTERM)  # the whole group, as a scheduler does, while the worker starts
print(sum(int(b.sum()) for b in batches), received)
"""


def run_child(loader: str) -> subprocess.CompletedProcess:
    """CHILD with ``loader`` ("detached" or "plain") in a session and process group of its own."""
    return subprocess.run([sys.executable, "-c", CHILD, loader], capture_output=True, text=True,
                          timeout=120, start_new_session=True)  # fmt: skip


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks only")
def test_a_group_sigterm_while_a_worker_starts_does_not_kill_it():
    run = run_child("detached")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "6 ['SIGTERM']"  # every batch, and the main process saw it


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks only")
def test_a_plain_loader_worker_dies_of_it():
    """The control: the same child with torch's DataLoader loses its worker."""
    run = run_child("plain")
    assert run.returncode != 0 and "exited unexpectedly" in run.stderr
