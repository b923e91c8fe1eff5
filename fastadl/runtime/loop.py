"""The loop skeleton the search and the retraining share: steps, progress, checkpoints,
signals, metrics and telemetry. Each loop (searcher.py, trainer.py) is a ``LoopTask``: its data,
its step, its validation and its state; everything else is here, once.

Checkpoints (atomic, rank 0 writes; see checkpoint.py) are written
- after every epoch, as ``epoch_NNNN`` (after validation);
- every ``checkpoint_every`` steps and every ``checkpoint_minutes`` of wall clock, as ``step_N``;
- when the run stops early (``max_steps``, SIGTERM / SIGINT), as ``step_N``.
Each holds the task's state, the loop counters, every RNG and how many metrics.jsonl records
preceded it, so a resumed run (``--resume``, or the same ``--out`` and config again, e.g. a
torchrun restart) continues bitwise where the checkpoint was taken, whenever the previous
process died. Writing a checkpoint draws no random numbers and changes no state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from fastadl.runtime import distributed as dist
from fastadl.runtime.preemption import Preempted, PreemptionGuard
from fastadl.runtime.rundir.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fastadl.runtime.rundir.files import write_run_files
from fastadl.runtime.rundir.metrics_log import MetricsLog, truncate_after, truncate_to
from fastadl.runtime.rundir.telemetry import Telemetry


class LoopTask(Protocol):
    """What a loop supplies. ``cfg`` is a config_base.LoopConfig (epochs, max_steps, ...)."""

    record_kind: str  # metrics.jsonl "kind" of a step record ("step" for the search, "train")
    steps_per_epoch: int
    device: torch.device

    def batches(self, epoch: int, start: int):
        """The batches of ``epoch`` from batch ``start`` on (an iterable)."""

    def train_step(self, batch, step: int) -> dict[str, Any]:
        """One step (``step`` = steps done before it); returns its record fields (with "loss")
        and the number of images under "images"."""

    def validate(self, epoch: int) -> dict[str, Any] | None:
        """Validation after ``epoch`` epochs on every rank: the epoch record's fields (with
        "val_miou"), or None when this epoch is not validated."""

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
    main = dist.is_main_process()
    device = task.device
    ckpt = Checkpointer(run_dir, cfg, main)
    log = MetricsLog(run_dir / "metrics.jsonl") if main else None
    epoch, position, step, val_history = 0, 0, 0, []

    # --- resume from the latest checkpoint (a run killed before its first one starts over)
    if resume and loaded is None:
        loaded = load_latest(run_dir, device)
    if loaded is not None:
        path, state = loaded
        try:
            task.load_state_dict(state)
            epoch, position, step = state["epoch"], state["position"], state["step"]
            val_history = list(state["val_miou"])
            set_rng_state(state["rng"])
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
            raise CheckpointError(
                f"{path} does not fit this run's network or optimizer "
                f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
            ) from None
    if main:
        if resume:
            remove_stale_temporaries(run_dir)
            if loaded is None:
                truncate_to(log.path, 0)
            elif "metrics_records" in loaded[1]:
                truncate_to(log.path, loaded[1]["metrics_records"])
            else:  # a checkpoint from before metrics_records existed
                truncate_after(log.path, "step", step)
            log = MetricsLog(log.path)
        write_run_files(run_dir, cfg)  # after the restore: a refused resume changes nothing

    def checkpoint(name: str) -> Path:
        return ckpt.save(
            name,
            lambda: {
                **task.state_dict(),
                "epoch": epoch,
                "position": position,
                "step": step,
                "val_miou": val_history,
                "rng": rng_state(),
                "config": cfg.to_dict(),
                "metrics_records": log.records if log else 0,
            },
        )

    def stop_on_signal(path: Path) -> None:
        dist.barrier()  # rank 0's checkpoint is on disk before any rank exits
        raise Preempted(guard.received, step, path)

    telemetry = Telemetry.start(device, run_dir / "telemetry.jsonl" if main else None)
    spe = task.steps_per_epoch
    try:
        with PreemptionGuard(quiet=not main) as guard:
            while epoch < cfg.epochs:
                stop = None
                bar = tqdm(
                    total=spe,
                    initial=position,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    disable=not (progress and main),
                    dynamic_ncols=True,
                )
                # Starting a DataLoader draws a seed from the global RNG; items reseed
                # themselves (loading.SeededItems), so keep that draw out of the global stream:
                # a run resumed mid-epoch then replays every later random number exactly.
                with torch.random.fork_rng(devices=[]):
                    batches = iter(task.batches(epoch, position))
                t0, seen = time.perf_counter(), 0
                for batch in batches:
                    if position >= spe:
                        break
                    fields = task.train_step(batch, step)
                    step += 1
                    position += 1
                    seen += fields.pop("images") * dist.world_size()
                    ips = seen / (time.perf_counter() - t0)
                    record = {"kind": task.record_kind, "step": step, "epoch": epoch + 1}
                    record.update(fields, images_per_s=ips)
                    if log:
                        log.append(record)
                    telemetry.sample(step)
                    postfix = {"loss": f"{record['loss']:.3f}", "img/s": f"{ips:.1f}"}
                    if val_history:
                        postfix["mIoU"] = f"{val_history[-1]:.3f}"
                    bar.set_postfix({**postfix, **telemetry.postfix()})
                    bar.update()
                    if guard.should_stop(device):
                        stop = "signal"
                        break
                    if cfg.max_steps and step >= cfg.max_steps:
                        stop = "max_steps"
                        break
                    if ckpt.due(step):
                        checkpoint(f"step_{step:08d}")
                bar.close()
                if stop == "signal":
                    stop_on_signal(checkpoint(f"step_{step:08d}"))
                if stop and position < spe:
                    checkpoint(f"step_{step:08d}")
                    break

                # end of epoch: validate, log, report, checkpoint
                epoch, position = epoch + 1, 0
                record = task.validate(epoch)
                if record is not None:
                    val_history.append(record["val_miou"])
                    if main:
                        log.append({"kind": "epoch", "step": step, "epoch": epoch, **record})
                        summary = task.report(epoch, record, log.path)
                        if progress:
                            tqdm.write(
                                f"epoch {epoch}: val mIoU {record['val_miou']:.4f}  {summary}"
                            )
                path = checkpoint(f"epoch_{epoch:04d}")
                if guard.should_stop(device):
                    stop_on_signal(path)
                if stop:
                    break
    finally:
        telemetry.close()
    dist.barrier()
    return LoopResult(run_dir=run_dir, step=step, epoch=epoch, val_miou=val_history)
