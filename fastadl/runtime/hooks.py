"""What the loop skeleton (loop.py) calls at fixed points, one object per concern: the metrics
log, telemetry, the progress bar, stop requests (signals, ``max_steps``), validation and
checkpoints. Like detectron2's ``HookBase``: the loop owns the counters, each hook reads them
from the ``Loop`` it is handed and keeps its own state.

The order of the hooks is the order of their effects within a point; ``default_hooks`` gives the
one every run uses (the metrics record is logged before telemetry samples, the progress bar
shows telemetry's figures, a stop request is seen before a step's periodic checkpoint).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from fastadl.runtime import distributed as dist
from fastadl.runtime.preemption import Preempted, PreemptionGuard
from fastadl.runtime.rundir.checkpoint import save_checkpoint
from fastadl.runtime.rundir.metrics_log import MetricsLog
from fastadl.runtime.rundir.telemetry import Telemetry

if TYPE_CHECKING:
    from fastadl.runtime.loop import Loop


class HookBase:
    """Does nothing at every point; a hook overrides the points it acts at."""

    def before_train(self, loop: Loop) -> None:
        """Once, after the restore, before the first epoch."""

    def before_epoch(self, loop: Loop) -> None:
        """Before an epoch's (remaining) steps."""

    def after_step(self, loop: Loop, record: dict[str, Any]) -> None:
        """After each step; ``record`` is its metrics.jsonl object. May set ``loop.stop``."""

    def after_steps(self, loop: Loop) -> None:
        """After an epoch's steps, whether they all ran or a stop request ended them."""

    def after_epoch(self, loop: Loop, record: dict[str, Any] | None) -> None:
        """After a complete epoch, with its validation record (None: not validated)."""

    def after_epoch_saved(self, loop: Loop, path: Path) -> None:
        """After the epoch's checkpoint (``path``) is written: the last point of an epoch."""

    def after_train(self, loop: Loop) -> None:
        """Once, however the loop ends (an exception included)."""


class Checkpointer:
    """When to checkpoint (every N steps, every M minutes) and the writing itself (rank 0)."""

    def __init__(self, run_dir: Path, cfg, main: bool, clock=time.monotonic) -> None:
        self.run_dir, self.main, self.clock = run_dir, main, clock
        self.every, self.keep = cfg.checkpoint_every, cfg.keep_checkpoints
        self.seconds = cfg.checkpoint_minutes * 60.0
        self.last = clock()

    def due(self, step: int) -> bool:
        if self.every and step % self.every == 0:
            return True
        return bool(self.seconds) and self.clock() - self.last >= self.seconds

    def save(self, name: str, make_state) -> Path:
        """Write ``make_state()`` as ``name`` on rank 0; every rank gets the checkpoint's path."""
        path = self.run_dir / "checkpoints" / f"{name}.pt"
        if self.main:
            path = save_checkpoint(self.run_dir, make_state(), name, keep=self.keep)
        self.last = self.clock()
        return path


class MetricsHook(HookBase):
    """Appends every step record to metrics.jsonl (rank 0; ``log`` is None elsewhere)."""

    def __init__(self, log: MetricsLog | None) -> None:
        self.log = log

    def after_step(self, loop: Loop, record: dict[str, Any]) -> None:
        if self.log:
            self.log.append(record)


class TelemetryHook(HookBase):
    """GPU memory, utilisation and power into telemetry.jsonl (rank 0), sampled per step."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def after_step(self, loop: Loop, record: dict[str, Any]) -> None:
        self.telemetry.sample(loop.step)

    def after_train(self, loop: Loop) -> None:
        self.telemetry.close()


class ProgressHook(HookBase):
    """One tqdm bar per epoch (rank 0, when ``progress``): loss, images/s, the last mIoU and
    telemetry's figures."""

    def __init__(self, progress: bool, telemetry: Telemetry) -> None:
        self.show, self.telemetry, self.bar = progress, telemetry, None

    def before_epoch(self, loop: Loop) -> None:
        self.bar = tqdm(
            total=loop.task.steps_per_epoch,
            initial=loop.position,
            desc=f"epoch {loop.epoch + 1}/{loop.cfg.epochs}",
            disable=not (self.show and loop.main),
            dynamic_ncols=True,
        )

    def after_step(self, loop: Loop, record: dict[str, Any]) -> None:
        postfix = {"loss": f"{record['loss']:.3f}", "img/s": f"{record['images_per_s']:.1f}"}
        if loop.val_miou:
            postfix["mIoU"] = f"{loop.val_miou[-1]:.3f}"
        self.bar.set_postfix({**postfix, **self.telemetry.postfix()})
        self.bar.update()

    def after_steps(self, loop: Loop) -> None:
        self.bar.close()


class StopHook(HookBase):
    """Stop requests: SIGTERM / SIGINT (agreed on by every rank) and ``max_steps``.

    A signal ends the run with a checkpoint and ``Preempted``; ``max_steps`` ends it with a
    checkpoint after the current step (the loop writes both, see ``Loop.run``).
    """

    def __init__(self, quiet: bool) -> None:
        self.guard, self.entered = PreemptionGuard(quiet=quiet), False

    def before_train(self, loop: Loop) -> None:
        self.guard.__enter__()
        self.entered = True

    def after_step(self, loop: Loop, record: dict[str, Any]) -> None:
        if self.guard.should_stop(loop.device):
            loop.stop = "signal"
        elif loop.cfg.max_steps and loop.step >= loop.cfg.max_steps:
            loop.stop = "max_steps"

    def after_steps(self, loop: Loop) -> None:
        if loop.stop == "signal":
            self.preempted(loop, loop.checkpoint(f"step_{loop.step:08d}"))

    def after_epoch_saved(self, loop: Loop, path: Path) -> None:
        if self.guard.should_stop(loop.device):
            self.preempted(loop, path)

    def after_train(self, loop: Loop) -> None:
        if self.entered:  # the signal handlers go back to what they were
            self.guard.__exit__(None, None, None)

    def preempted(self, loop: Loop, path: Path) -> None:
        dist.barrier()  # rank 0's checkpoint is on disk before any rank exits
        raise Preempted(self.guard.received, loop.step, path)


class CheckpointHook(HookBase):
    """Periodic ``step_N`` checkpoints between stop requests (when the loop's Checkpointer says
    one is due), ``epoch_NNNN`` after each epoch."""

    def after_step(self, loop: Loop, record: dict[str, Any]) -> None:
        if loop.stop is None and loop.checkpointer.due(loop.step):
            loop.checkpoint(f"step_{loop.step:08d}")

    def after_epoch(self, loop: Loop, record: dict[str, Any] | None) -> None:
        loop.checkpoint(f"epoch_{loop.epoch:04d}")


class ValidationHook(HookBase):
    """After each epoch: the task's validation on every rank, its record logged and reported
    (rank 0), its mIoU kept in the loop's history."""

    def __init__(self, log: MetricsLog | None, progress: bool) -> None:
        self.log, self.progress = log, progress

    def after_epoch(self, loop: Loop, record: dict[str, Any] | None) -> None:
        if record is None:
            return
        loop.val_miou.append(record["val_miou"])
        if loop.main:
            self.log.append({"kind": "epoch", "step": loop.step, "epoch": loop.epoch, **record})
            summary = loop.task.report(loop.epoch, record, self.log.path)
            if self.progress:
                tqdm.write(f"epoch {loop.epoch}: val mIoU {record['val_miou']:.4f}  {summary}")


def default_hooks(loop: Loop, log: MetricsLog | None, progress: bool) -> list[HookBase]:
    """The hooks of every search and training run, in the order they act."""
    telemetry = Telemetry.start(
        loop.device, loop.run_dir / "telemetry.jsonl" if loop.main else None
    )
    return [
        MetricsHook(log),
        TelemetryHook(telemetry),
        ProgressHook(progress, telemetry),
        StopHook(quiet=not loop.main),
        ValidationHook(log, progress),
        CheckpointHook(),
    ]
