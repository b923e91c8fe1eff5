"""What the loop skeleton (loop.py) calls at fixed points, one object per concern: the metrics
log, telemetry, the progress bar (or plain lines in a log), stop requests (signals,
``max_steps``), validation, TensorBoard event files and checkpoints. Like detectron2's
``HookBase``: the loop owns the counters, each hook reads them from the ``Loop`` it is handed
and keeps its own state.

The order of the hooks is the order of their effects within a point; ``default_hooks`` gives the
one every run uses (the metrics record is logged before telemetry samples, the progress bar
shows telemetry's figures, a stop request is seen before a step's periodic checkpoint).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from fastadl.runtime import distributed as dist
from fastadl.runtime.preemption import Preempted, PreemptionGuard
from fastadl.runtime.rundir.checkpoint import save_checkpoint
from fastadl.runtime.rundir.metrics_log import MetricsLog
from fastadl.runtime.rundir.telemetry import Telemetry
from fastadl.runtime.rundir.tensorboard import RunBoard, open_board

if TYPE_CHECKING:
    from fastadl.runtime.loop import Loop


class HookBase:
    """Does nothing at every point; a hook overrides the points it acts at."""

    def before_train(self, loop: Loop) -> None:
        """Once, after the restore, before the first epoch."""

    def before_epoch(self, loop: Loop) -> None:
        """Before an epoch's (remaining) steps."""

    def after_step(self, loop: Loop, record: dict[str, Any]) -> None:
        """After each step; ``record`` is its metrics.jsonl object, its values possibly still
        on the device (0-d tensors: leave them unread). May set ``loop.stop``."""

    def after_records(self, loop: Loop, records: list[dict[str, Any]]) -> None:
        """When the loop has read the steps' values (loop.py's READ_EVERY, before a checkpoint,
        after an epoch's steps): the records since the last read, in step order, with Python
        numbers."""

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

    def after_records(self, loop: Loop, records: list[dict[str, Any]]) -> None:
        if self.log:
            for record in records:
                self.log.append(record)


class TelemetryHook(HookBase):
    """GPU memory, utilisation and power into telemetry.jsonl (rank 0), sampled per step."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def after_step(self, loop: Loop, record: dict[str, Any]) -> None:
        self.telemetry.sample(loop.step)

    def after_train(self, loop: Loop) -> None:
        self.telemetry.close()


def live_output(stream=None) -> bool:
    """Whether progress on ``stream`` (default stderr) can be a live bar: a terminal. A file, a
    pipe or a CI log gets plain lines instead (no carriage returns)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def clock_text(seconds: float) -> str:
    """``H:MM:SS`` (``M:SS`` under an hour) of a duration."""
    s = max(0, int(round(seconds)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class LineProgress:
    """Progress for logs: one plain line on ``stream`` at most every ``interval`` seconds and
    after the last step of every epoch, e.g.

        step 125/150 (epoch 5/6, 25/25): loss 0.8123, lr 0.00803, 9.4 img/s, 1.2 step/s, ETA 0:21

    The rate and ETA count this process's steps and wall clock (validation included)."""

    def __init__(self, stream=None, interval: float = 30.0, clock=time.monotonic) -> None:
        self.stream, self.interval, self.clock = stream, interval, clock
        self.t0 = self.last = self.step0 = None

    def start(self, step: int) -> None:
        self.t0 = self.last = self.clock()
        self.step0 = step

    def after_step(self, loop: Loop, record: dict[str, Any], extra: Callable[[], dict]) -> None:
        """Print a line if one is due; ``extra()``: more "name value" fields (mIoU, memory)."""
        now, spe = self.clock(), loop.task.steps_per_epoch
        if now - self.last < self.interval and loop.position < spe:
            return
        self.last = now
        total = spe * loop.cfg.epochs
        if loop.cfg.max_steps:  # the run stops there
            total = min(total, loop.cfg.max_steps)
        rate = (loop.step - self.step0) / max(now - self.t0, 1e-9)
        eta = clock_text((total - loop.step) / rate) if rate > 0 else "?"
        fields = [f"loss {record['loss']:.4f}"]
        if "lr" in record:
            fields.append(f"lr {record['lr']:.3g}")
        fields += [f"{record['images_per_s']:.1f} img/s", f"{rate:.2f} step/s", f"ETA {eta}"]
        fields += [f"{k} {v}" for k, v in extra().items()]
        where = f"epoch {loop.epoch + 1}/{loop.cfg.epochs}, {loop.position}/{spe}"
        line = f"step {loop.step}/{total} ({where}): {', '.join(fields)}"
        stream = sys.stderr if self.stream is None else self.stream
        print(line, file=stream, flush=True)


class ProgressHook(HookBase):
    """Progress on rank 0, when ``progress``: on a terminal one live tqdm bar per epoch (loss,
    images/s, the last mIoU and telemetry's figures); otherwise ``LineProgress``'s plain lines."""

    def __init__(self, progress: bool, telemetry: Telemetry, live: bool | None = None) -> None:
        self.show, self.telemetry, self.bar = progress, telemetry, None
        self.live = live_output() if live is None else live
        self.lines = None if self.live else LineProgress()

    def before_train(self, loop: Loop) -> None:
        if self.lines is not None:
            self.lines.start(loop.step)

    def before_epoch(self, loop: Loop) -> None:
        self.bar = tqdm(
            total=loop.task.steps_per_epoch,
            initial=loop.position,
            desc=f"epoch {loop.epoch + 1}/{loop.cfg.epochs}",
            disable=not (self.show and loop.main and self.live),
            dynamic_ncols=True,
        )

    def after_step(self, loop: Loop, record: dict[str, Any]) -> None:
        if self.lines is None:
            self.bar.update()

    def after_records(self, loop: Loop, records: list[dict[str, Any]]) -> None:
        """The figures of the newest record read (the loss is read every few steps)."""
        record = records[-1]

        def extra() -> dict[str, str]:
            miou = {"mIoU": f"{loop.val_miou[-1]:.3f}"} if loop.val_miou else {}
            return {**miou, **self.telemetry.postfix()}

        if self.lines is not None:
            if self.show and loop.main:
                self.lines.after_step(loop, record, extra)
            return
        shown = {"loss": f"{record['loss']:.3f}", "img/s": f"{record['images_per_s']:.1f}"}
        self.bar.set_postfix({**shown, **extra()})

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
                sys.stdout.flush()  # in a log file, before the next progress line (stderr)


class TensorBoardHook(HookBase):
    """TensorBoard event files in the run directory (rank 0, when ``cfg.tensorboard``): the same
    step and epoch records as metrics.jsonl, the genotype, the plots (rundir/tensorboard.py).
    Acts after ValidationHook, whose task report draws the epoch's plots. The event file is
    created with the first record, so a run refused before its first step leaves none."""

    def __init__(self) -> None:
        self.board: RunBoard | None = None
        self.on, self.purge_step, self.genotype = False, None, None

    def before_train(self, loop: Loop) -> None:
        self.on = loop.main and getattr(loop.cfg, "tensorboard", False)
        # a resumed run hides what an earlier process wrote after the checkpoint's step
        self.purge_step = loop.step + 1
        genotype = getattr(loop.task, "genotype", None)  # a retraining's, known from the start
        self.genotype = genotype.to_dict() if genotype is not None and loop.step == 0 else None

    def open(self, loop: Loop) -> RunBoard | None:
        if self.on and self.board is None:
            self.on = False  # one try: without the tensorboard package it said so once
            self.board = open_board(loop.run_dir, purge_step=self.purge_step)
            if self.board and self.genotype is not None:
                self.board.genotype(0, self.genotype)
        return self.board

    def after_records(self, loop: Loop, records: list[dict[str, Any]]) -> None:
        if self.open(loop):
            for record in records:
                self.board.step(record)

    def after_epoch(self, loop: Loop, record: dict[str, Any] | None) -> None:
        if record is not None and self.open(loop):
            self.board.epoch(loop.step, record)
            self.board.plots(loop.step, loop.run_dir / "plots")
            self.board.flush()

    def after_train(self, loop: Loop) -> None:
        if self.board:
            self.board.close()
            self.board = None


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
        TensorBoardHook(),
        CheckpointHook(),
    ]
