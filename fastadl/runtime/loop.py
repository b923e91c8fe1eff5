"""The loop skeleton the search and the retraining share. Each loop (fastadl/search/searcher.py,
fastadl/train/trainer.py) is a ``LoopTask``: its data, its step, its validation and its state.
The skeleton keeps the counters and calls hooks at fixed points (hooks.py: the metrics log,
telemetry, progress, stop requests, validation records, checkpoints); everything else is
there, once.

Checkpoints (atomic, rank 0 writes; see checkpoint.py) are written
- after every epoch, as ``epoch_NNNN`` (after validation);
- every ``checkpoint_every`` steps and every ``checkpoint_minutes`` of wall clock, as ``step_N``;
- when the run stops early (``max_steps``, SIGTERM / SIGINT), as ``step_N``.
Each holds the task's state, the loop counters, every RNG and how many metrics.jsonl records
preceded it, so a resumed run (``--resume``, or the same ``--out`` and config again, e.g. a
torchrun restart) continues bitwise where the checkpoint was taken, whenever the previous
process died. Writing a checkpoint draws no random numbers and changes no state.

A step leaves its values on the device (its loss a 0-d tensor, its non-finite checks in the
task's ``watch``, runtime/steps.py's FiniteWatch), so on CUDA the host never waits for it. The
loop reads them together, one host synchronisation, every ``READ_EVERY`` steps, before every
checkpoint and after an epoch's steps: the records then go to the hooks (metrics.jsonl, the
progress, TensorBoard), and a non-finite value raises NonFiniteError, so a checkpoint is only
written after the steps it holds were found finite: the last one on disk is a good one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from fastadl.runtime import distributed as dist
from fastadl.runtime.hooks import Checkpointer, HookBase, default_hooks
from fastadl.runtime.rundir.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    set_rng_state,
)
from fastadl.runtime.rundir.files import write_run_files
from fastadl.runtime.rundir.metrics_log import MetricsLog, truncate_after, truncate_to

# Steps between two reads of the steps' device values (records, non-finite checks): a read
# makes the host wait for the device, so not every step; a non-finite value is then found at
# most this many steps late (it stops the run before any checkpoint holds it).
READ_EVERY = 10


class LoopTask(Protocol):
    """What a loop supplies. ``cfg`` is a fastadl/runtime/config.py's LoopConfig (epochs, max_steps, ...)."""

    record_kind: str  # metrics.jsonl "kind" of a step record ("step" for the search, "train")
    steps_per_epoch: int
    device: torch.device

    def batches(self, epoch: int, start: int):
        """The batches of ``epoch`` from batch ``start`` on (an iterable)."""

    def train_step(self, batch, step: int) -> dict[str, Any]:
        """One step (``step`` = steps done before it); returns its record fields (with "loss";
        a value may be a 0-d device tensor, read later by the loop) and the number of images
        under "images". A task with a ``watch`` attribute (runtime/steps.py's FiniteWatch) has
        it checked at every read."""

    def validate(self, epoch: int) -> dict[str, Any] | None:
        """Validation after ``epoch`` epochs on every rank: the epoch record's fields (with
        "val_miou"), or None when this epoch is not validated."""

    def schedule_warning(self) -> str | None:
        """A warning, said at the start, when the schedule is too short to learn anything: the
        step counts, what they come from and the flags that lengthen it (None: long enough)."""

    def report(self, epoch: int, record: dict[str, Any], metrics_path: Path) -> str:
        """Rank 0, after the epoch record is logged: the epoch's files and plots; returns the
        end of the epoch's summary line (after "epoch N: val mIoU X")."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def state_dicts(**parts) -> dict[str, Any]:
    """``{name: part.state_dict()}`` for a task's stateful parts (optimizers, scalers, ...)."""
    return {name: part.state_dict() for name, part in parts.items()}


def load_state_dicts(state: dict[str, Any], **parts) -> None:
    """``part.load_state_dict(state[name])`` for each part (the inverse of ``state_dicts``)."""
    for name, part in parts.items():
        part.load_state_dict(state[name])


@dataclass
class LoopResult:
    run_dir: Path
    step: int
    epoch: int
    val_miou: list[float] = field(default_factory=list)


def load_latest(run_dir: Path, device: torch.device) -> tuple[Path, dict] | None:
    """The run's latest checkpoint as (path, state), or None when it has none yet."""
    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    return path, load_checkpoint(path, map_location=device)


def run_loop(
    task: LoopTask,
    cfg,
    run_dir: Path,
    *,
    resume: bool,
    progress: bool = True,
    loaded: tuple[Path, dict] | None = None,
) -> LoopResult:
    """Run ``task`` for ``cfg.epochs`` epochs into ``run_dir`` (continuing it if ``resume``).

    loaded: the latest checkpoint when the caller already read it (``load_latest``).

    Raises Preempted after checkpointing on SIGTERM / SIGINT, NonFiniteError (the last
    checkpoint intact), CheckpointError (e.g. a checkpoint for another network, a full disk).
    """
    loop = Loop(task, cfg, run_dir)
    warning = task.schedule_warning()
    if warning and loop.main:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if resume and loaded is None:
        loaded = load_latest(run_dir, loop.device)
    if loaded is not None:
        loop.restore(*loaded)
    log = loop.open_log(resume, loaded)
    return loop.run(default_hooks(loop, log, progress))


class Loop:
    """The counters of a run and the order of its points; what happens at them is in hooks.py."""

    def __init__(self, task: LoopTask, cfg, run_dir: Path) -> None:
        self.task, self.cfg, self.run_dir = task, cfg, run_dir
        self.main = dist.is_main_process()
        self.device = task.device
        self.epoch, self.position, self.step = 0, 0, 0  # position: steps done in this epoch
        self.val_miou: list[float] = []
        self.stop: str | None = None  # "signal" | "max_steps": why an epoch's steps ended early
        self.log: MetricsLog | None = None
        self.last_checkpoint: Path | None = None
        self.checkpointer = Checkpointer(run_dir, cfg, self.main)
        self.hooks: list[HookBase] = []
        self.pending: list[dict[str, Any]] = []  # step records whose values are not read yet
        self.read_at = 0  # the step of the last read

    def restore(self, path: Path, state: dict) -> None:
        """The task's state, the counters and every RNG from a checkpoint."""
        try:
            self.task.load_state_dict(state)
            self.epoch, self.position, self.step = state["epoch"], state["position"], state["step"]
            self.read_at, self.last_checkpoint = self.step, path
            self.val_miou = list(state["val_miou"])
            set_rng_state(state["rng"])
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
            raise CheckpointError(
                f"{path} does not fit this run's network or optimizer "
                f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
            ) from None

    def open_log(self, resume: bool, loaded: tuple[Path, dict] | None) -> MetricsLog | None:
        """metrics.jsonl on rank 0, cut back to what the restored checkpoint had seen, and the
        run's files (after the restore: a refused resume changes nothing)."""
        if not self.main:
            return None
        path = self.run_dir / "metrics.jsonl"
        if resume:
            remove_stale_temporaries(self.run_dir)
            if loaded is None:
                truncate_to(path, 0)
            elif "metrics_records" in loaded[1]:
                truncate_to(path, loaded[1]["metrics_records"])
            else:  # a checkpoint from before metrics_records existed
                truncate_after(path, "step", self.step)
        write_run_files(self.run_dir, self.cfg)
        self.log = MetricsLog(path)
        return self.log

    def read_values(self) -> None:
        """Read the pending step records' device values (0-d tensors become Python numbers,
        one host synchronisation), hand the records to the hooks, then check the task's
        non-finite watch: NonFiniteError naming the step and the steps this read covered."""
        records, self.pending = self.pending, []
        since, self.read_at = self.read_at, self.step
        lazy = [
            (r, k) for r in records for k, v in r.items()
            if isinstance(v, torch.Tensor) and v.numel() == 1
        ]  # fmt: skip
        if lazy:
            values = torch.stack([r[k].detach().float().reshape(()) for r, k in lazy]).tolist()
            for (r, k), v in zip(lazy, values, strict=True):
                r[k] = v
        if records:
            for hook in self.hooks:
                hook.after_records(self, records)
        watch = getattr(self.task, "watch", None)
        if watch is not None:
            last = self.last_checkpoint or "none yet"
            watch.check(f" (found when steps {since + 1}-{self.step} were read; the last "
                        f"checkpoint, from before them: {last})")  # fmt: skip

    def checkpoint(self, name: str) -> Path:
        """Write the task's state and the counters as checkpoint ``name`` (rank 0), after
        reading the steps' values (read_values: a non-finite state is never written)."""
        self.read_values()
        self.last_checkpoint = self.checkpointer.save(
            name,
            lambda: {
                **self.task.state_dict(),
                "epoch": self.epoch,
                "position": self.position,
                "step": self.step,
                "val_miou": self.val_miou,
                "rng": rng_state(),
                "config": self.cfg.to_dict(),
                "metrics_records": self.log.records if self.log else 0,
            },
        )
        return self.last_checkpoint

    def run(self, hooks: list[HookBase]) -> LoopResult:
        """The epochs, each its steps then its end (validation, checkpoint), with the hooks
        called at their points."""
        self.hooks = hooks
        try:
            for hook in hooks:
                hook.before_train(self)
            while self.epoch < self.cfg.epochs:
                for hook in hooks:
                    hook.before_epoch(self)
                self.run_steps(hooks)
                for hook in hooks:
                    hook.after_steps(self)
                if self.stop and self.position < self.task.steps_per_epoch:
                    self.checkpoint(f"step_{self.step:08d}")
                    break
                self.epoch, self.position = self.epoch + 1, 0
                record = self.task.validate(self.epoch)
                for hook in hooks:
                    hook.after_epoch(self, record)
                for hook in hooks:
                    hook.after_epoch_saved(self, self.last_checkpoint)
                if self.stop:
                    break
        finally:
            for hook in hooks:
                hook.after_train(self)
        dist.barrier()
        return LoopResult(self.run_dir, self.step, self.epoch, self.val_miou)

    def run_steps(self, hooks: list[HookBase]) -> None:
        """The epoch's remaining steps, until they end or a hook sets ``stop``."""
        spe = self.task.steps_per_epoch
        # Starting a DataLoader draws a seed from the global RNG; items reseed themselves
        # (loading.SeededItems), so keep that draw out of the global stream: a run resumed
        # mid-epoch then replays every later random number exactly.
        with torch.random.fork_rng(devices=[]):
            batches = iter(self.task.batches(self.epoch, self.position))
        t0, seen = time.perf_counter(), 0
        for batch in batches:
            if self.position >= spe:
                break
            fields = self.task.train_step(batch, self.step)
            self.step += 1
            self.position += 1
            seen += fields.pop("images") * dist.world_size()
            record = {"kind": self.task.record_kind, "step": self.step, "epoch": self.epoch + 1}
            record.update(fields, images_per_s=seen / (time.perf_counter() - t0))
            self.pending.append(record)
            for hook in hooks:
                hook.after_step(self, record)
            if self.step - self.read_at >= READ_EVERY:
                self.read_values()
            if self.stop:
                break
        self.read_values()
