"""Kill drill: SIGKILL a search (or a retraining) at random moments, restart it each time with
the same command, and check it ends bitwise where an uninterrupted run ends.

    python scripts/kill_drill.py                      # search, 20 kills (docs/RELIABILITY.md)
    python scripts/kill_drill.py --loop train --kills 10

Each kill aims at one phase in turn: the middle of a training step, validation, or the middle
of a checkpoint write (a checkpoint's temporary file exists at the moment of the kill); the
targets are spread evenly over the run's steps, the moment within the phase is random. Every
restart is the unchanged command line, so it also exercises the automatic continuation of a
run directory holding the same config (what ``torchrun --max-restarts`` relies on). At the
end the model state (weights, BatchNorm statistics, α and β), the optimizer states,
genotype.json and every metrics.jsonl record (all but the wall-clock ``images_per_s``) are
compared with the uninterrupted run's. Exit status 0 when everything is equal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastadl.runtime.rundir.checkpoint import CheckpointError, load_checkpoint

# A reduced tiny search: 48 synthetic 32×32 images (24 in each half: 6 steps of 4 an epoch),
# 4 epochs, 2 layers, F = B = 2, 16 validation images; checkpoints every 4 steps and every
# 3 s of wall clock besides the epoch ends.
SEARCH_FLAGS = [
    "--num-images", "48", "--image-size", "32", "--crop-size", "32", "--val-images", "16",
    "--layers", "2", "--filter-multiplier", "2", "--block-multiplier", "2", "--epochs", "4",
    "--arch-start-epoch", "1", "--batch-size", "4", "--workers", "0", "--threads", "1",
    "--checkpoint-every", "4", "--checkpoint-minutes", "0.05", "--device", "cpu",
]  # fmt: skip
# The tiny retraining on 32 synthetic 32×32 images: 8 steps of 4 an epoch, 3 epochs, drop-path
# on (its random numbers come from the global RNG the checkpoints carry), one loader process.
TRAIN_FLAGS = [
    "--num-images", "32", "--image-size", "32", "--crop-size", "32", "--val-images", "8",
    "--batch-size", "4", "--epochs", "3", "--drop-path-prob", "0.2", "--workers", "1",
    "--threads", "1", "--checkpoint-every", "3", "--checkpoint-minutes", "0.05",
    "--device", "cpu",
]  # fmt: skip
PHASES = ("step", "validation", "checkpoint")
TIMING_FIELDS = {"images_per_s"}  # wall clock: differs between any two runs


@dataclass
class Kill:
    target_step: int
    aimed: str
    observed: str = ""
    at_step: int = 0


@dataclass
class DrillResult:
    kills: list[Kill] = field(default_factory=list)
    alive_at_kill: int = 0  # kills that found the (re)started process running
    mismatches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches and self.alive_at_kill == len(self.kills)


def _records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line being written
    return out


def _last_step(run: Path) -> int:
    steps = [r["step"] for r in _records(run) if r.get("kind") != "epoch"]
    return steps[-1] if steps else 0


def _writing_checkpoint(run: Path, since: float) -> bool:
    """A checkpoint's temporary file written after ``since`` exists (a write in progress)."""
    try:
        with os.scandir(run / "checkpoints") as entries:
            return any(e.name.endswith(".tmp") and e.stat().st_mtime >= since for e in entries)
    except FileNotFoundError:
        return False


def _in_validation(run: Path, steps_per_epoch: int) -> bool:
    records = _records(run)
    if not records or records[-1].get("kind") == "epoch":
        return False
    return records[-1]["step"] % steps_per_epoch == 0


def _phase_now(run: Path, steps_per_epoch: int, since: float) -> str:
    if _writing_checkpoint(run, since):
        return "checkpoint"
    return "validation" if _in_validation(run, steps_per_epoch) else "step"


def _resumes_from(run: Path) -> int:
    """The step the next start continues from (0 for a fresh start)."""
    try:
        return int(load_checkpoint(run)["step"])
    except CheckpointError:
        return 0


def _stepped(run: Path, since: float, resumed: int) -> bool:
    """The process started at ``since`` has finished a step of its own: metrics.jsonl was
    rewritten after ``since`` (the restart truncates the dead attempt's records) and ends past
    the checkpoint it resumed from."""
    path = run / "metrics.jsonl"
    return path.is_file() and path.stat().st_mtime >= since and _last_step(run) > resumed


def _launch(loop: str, flags: list[str], run: Path, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", f"fastadl.{loop}", *flags, "--out", str(run), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)


def _wait(proc: subprocess.Popen, until, timeout: float, spin: bool = False) -> bool:
    """Poll ``until()`` while ``proc`` runs; True when it held (False: exited or timed out)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if until():
            return True
        if not spin:
            time.sleep(0.005)
    return False


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the process and its loader workers, no warning
    proc.wait()


def _aim(kill: Kill, loop: str, flags: list[str], run: Path, spe: int, rng, log) -> None:
    """Start the run, wait for ``kill``'s phase at or after its target step, SIGKILL it."""
    resumed = _resumes_from(run)
    since = time.time()
    proc = _launch(loop, flags, run, log)
    target = max(kill.target_step, resumed + 1)
    reached = _wait(
        proc, lambda: _stepped(run, since, resumed) and _last_step(run) >= target, timeout=600
    )
    if reached and kill.aimed == "step":
        time.sleep(rng.uniform(0.0, 0.25))  # somewhere inside the next step
    elif reached and kill.aimed == "validation":
        _wait(proc, lambda: _in_validation(run, spe), timeout=600)
        time.sleep(rng.uniform(0.0, 0.05))
    elif reached:
        _wait(proc, lambda: _writing_checkpoint(run, since), timeout=120, spin=True)
    kill.observed = _phase_now(run, spe, since) if proc.poll() is None else "after exit"
    kill.at_step = _last_step(run)
    _kill(proc)


def _compare(ref: Path, run: Path) -> list[str]:
    """What differs between the two run directories' end states (empty: bitwise equal)."""
    out = []
    a, b = load_checkpoint(ref), load_checkpoint(run)
    for k in ("step", "epoch", "val_miou"):
        if a[k] != b[k]:
            out.append(f"{k}: {a[k]} != {b[k]}")
    for k, v in a["model"].items():
        if not torch.equal(v, b["model"][k]):
            out.append(f"model[{k}] differs")
    opt_a = {k: v for k, v in a.items() if k in ("w_opt", "architect", "optimizer")}
    for name, state in opt_a.items():
        flat_a, flat_b = _tensors(state), _tensors(b[name])
        same = len(flat_a) == len(flat_b) and all(map(torch.equal, flat_a, flat_b))
        if not same:
            out.append(f"{name} state differs")
    if (ref / "genotype.json").read_text() != (run / "genotype.json").read_text():
        out.append("genotype.json differs")
    strip = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in _records(ref)]
    got = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in _records(run)]
    if strip != got:
        out.append(f"metrics.jsonl differs ({len(strip)} vs {len(got)} records)")
    return out


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for k in sorted(value, key=str) for t in _tensors(value[k])]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def run_drill(loop: str, kills: int, work: Path, flags: list[str], seed: int = 0) -> DrillResult:
    """Reference run, then ``kills`` SIGKILLs and restarts of a second run, then the comparison."""
    work.mkdir(parents=True, exist_ok=True)
    ref, run = work / "reference", work / "killed"
    with open(work / "reference.log", "w") as log:
        if _launch(loop, flags, ref, log).wait() != 0:
            raise RuntimeError(f"the reference run failed: see {work / 'reference.log'}")
    records = _records(ref)
    total = max(r["step"] for r in records)
    epochs = sum(r["kind"] == "epoch" for r in records)
    spe = total // epochs
    rng = random.Random(seed)
    result = DrillResult()
    for i in range(kills):
        target = max(1, math.ceil(total * (i + rng.random()) / kills))
        result.kills.append(Kill(target_step=min(target, total), aimed=PHASES[i % len(PHASES)]))
    with open(work / "killed.log", "w") as log:
        for kill in result.kills:
            _aim(kill, loop, flags, run, spe, rng, log)
            print(f"kill at step {kill.at_step:3d} aimed {kill.aimed:10s} hit {kill.observed}")
        final = _launch(loop, flags, run, log).wait()
    result.alive_at_kill = sum(k.observed != "after exit" for k in result.kills)
    if final != 0:
        result.mismatches.append(f"the final restart failed (exit {final}): see killed.log")
    else:
        result.mismatches += _compare(ref, run)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", choices=("search", "train"), default="search")
    p.add_argument("--kills", type=int, default=None, help="default: 20 (search), 10 (train)")
    p.add_argument("--work", type=Path, default=Path("runs/kill-drill"), help="scratch folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    args = p.parse_args(argv)
    kills = args.kills or (20 if args.loop == "search" else 10)
    flags = SEARCH_FLAGS if args.loop == "search" else TRAIN_FLAGS
    t0 = time.monotonic()
    result = run_drill(args.loop, kills, args.work / args.loop, flags, args.seed)
    hits = {ph: sum(k.observed == ph for k in result.kills) for ph in (*PHASES, "after exit")}
    print(f"{args.loop}: {len(result.kills)} SIGKILLs ({hits}), {time.monotonic() - t0:.0f} s")
    if result.passed:
        print(f"bitwise equal to the uninterrupted run: {len(result.kills)}/{len(result.kills)}")
        return 0
    print("MISMATCH: " + "; ".join(result.mismatches))
    return 1


if __name__ == "__main__":
    sys.exit(main())
