"""Stopping a long run cleanly: SIGTERM / SIGINT finish the current step, then the loop
checkpoints and raises ``Preempted``; a second SIGINT stops at once (KeyboardInterrupt).

Under several processes the stop is agreed: every step the ranks take the max of their flags,
so a signal that reaches one rank (a scheduler, torchrun forwarding it) stops them all after
the same step, and rank 0's checkpoint holds a state every rank reached.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import torch

from fastadl.runtime import distributed as dist

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """The run stopped on a signal after writing a checkpoint it resumes from exactly."""

    def __init__(self, signal_name: str, step: int, checkpoint) -> None:
        super().__init__(f"stopped by {signal_name} after step {step}; checkpoint {checkpoint}")
        self.signal_name = signal_name
        self.step = step
        self.checkpoint = checkpoint


def detach_from_stop_signals(_worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: move the loader process into a process group of its own.

    A terminal's Ctrl-C and many schedulers signal the whole process group; a worker that died
    of it would make the main process fail on its next batch instead of finishing its step.
    Detached, a worker still ends the normal ways: the main process stops it (its own
    SIGTERM), or it sees the main process gone (PyTorch's worker watchdog). Ignoring the
    signals instead would hang the main process's exit, which terminates workers by SIGTERM.

    A group signal sent between the fork and this call would still kill the worker, so workers
    are started with the stop signals blocked (``stop_signals_blocked``): here, once out of the
    group, a pending one is discarded (setting a signal to SIG_IGN drops it) and they are
    unblocked.
    """
    if hasattr(os, "setpgid"):  # POSIX; elsewhere there are no process-group signals to dodge
        os.setpgid(0, 0)
        # SIG_DFL afterwards, not what getsignal() reports: a worker reports the parent's
        # Python handler yet dies of SIGTERM, and the main process's shutdown relies on that
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def stop_signals_blocked():
    """SIGTERM and SIGINT held back in this thread while the block runs (where POSIX masks
    exist); the processes it forks inherit the mask. A signal that arrives meanwhile is delivered after."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class PreemptionGuard:
    """Context manager catching SIGTERM / SIGINT while a loop runs (main thread only).

    ``received`` is the first signal's name (or None); ``should_stop(device)`` is the decision all
    ranks share. Handlers are restored on exit.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.received: str | None = None
        self.quiet = quiet
        self._previous: dict[int, object] = {}

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # the second Ctrl-C: stop at once, no checkpoint
            return  # e.g. a scheduler repeating SIGTERM: the stop is already under way
        self.received = name
        if not self.quiet:
            print(
                f"\n{name}: finishing this step, then checkpointing and stopping "
                "(Ctrl-C again stops at once, without a checkpoint)",
                file=sys.stderr,
                flush=True,
            )

    def should_stop(self, device: torch.device) -> bool:
        """True on every rank once any rank has received a stop signal."""
        flag = self.received is not None
        if dist.world_size() > 1:
            t = torch.tensor([float(flag)], device=device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item())
            if flag and self.received is None:
                self.received = "a stop signal on another rank"
        return flag
