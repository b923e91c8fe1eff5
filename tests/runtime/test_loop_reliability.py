"""The shared loop under what long runs meet: SIGTERM / SIGINT, time-based and pruned
checkpoints, a full disk, torchrun's run directory rule, and --help that tells the truth."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from small_runs import SMALL_TRAIN

from fastadl.runtime import steps as steps_module
from fastadl.runtime.cli import build_parser
from fastadl.runtime.hooks import Checkpointer
from fastadl.runtime.rundir import checkpoint as checkpoint_module
from fastadl.runtime.rundir.checkpoint import latest_checkpoint, load_checkpoint
from fastadl.runtime.rundir.metrics_log import read
from fastadl.search import cli as search
from fastadl.search import config
from fastadl.train import cli as train
from fastadl.train import config as train_config

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = [*SMALL_TRAIN, "--no-progress"]


def _signal_at_weight_step(monkeypatch, at: int, *signals: int) -> None:
    """Send ``signals`` to this process inside the ``at``-th weight step (1-based)."""
    real = steps_module.weight_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            for s in signals:
                os.kill(os.getpid(), s)
        return real(*args, **kwargs)

    monkeypatch.setattr("fastadl.train.trainer.weight_step", step)


def _same_weights(a, b) -> None:
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    assert sa["step"] == sb["step"]
    for k in sa["model"]:
        torch.testing.assert_close(sa["model"][k], sb["model"][k], rtol=0, atol=0, msg=k)


def _step_records(run_dir) -> list[dict]:
    timing = {"images_per_s"}
    return [
        {k: v for k, v in r.items() if k not in timing}
        for r in read(run_dir / "metrics.jsonl")
        if r["kind"] != "epoch"
    ]


def test_sigterm_during_a_step_checkpoints_that_step_and_resumes_exactly(
    tmp_path, monkeypatch, capsys
):
    common = [*SMALL, "--epochs", "2", "--drop-path-prob", "0.2"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train.main([*common, "--out", str(straight)]) == 0

    _signal_at_weight_step(monkeypatch, 3, signal.SIGTERM)
    assert train.main([*common, "--out", str(stopped)]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if line and not line.startswith("warning: short schedule")]
    assert "SIGTERM: finishing this step" in err[0]
    assert f"resume with: python -m fastadl.train --resume {stopped}" in err[-1]
    assert latest_checkpoint(stopped).name == "step_00000003.pt"
    assert load_checkpoint(stopped)["step"] == 3  # the step in flight was finished, not lost
    monkeypatch.undo()

    assert train.main(["--resume", str(stopped), "--no-progress"]) == 0
    _same_weights(straight, stopped)
    assert _step_records(straight) == _step_records(stopped)
    assert [r["val_miou"] for r in read(stopped / "metrics.jsonl") if r["kind"] == "epoch"] == [
        r["val_miou"] for r in read(straight / "metrics.jsonl") if r["kind"] == "epoch"
    ]


def test_a_second_sigint_stops_at_once_without_a_checkpoint(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    # what was there before: Python's default_int_handler, or SIG_IGN where the suite itself
    # was started in the background of a non-interactive shell
    before = signal.getsignal(signal.SIGINT)
    _signal_at_weight_step(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    code = train.main([*SMALL, "--epochs", "1", "--checkpoint-every", "1", "--out", str(run)])
    assert code == 130
    assert "interrupted: stopped at once" in capsys.readouterr().err
    assert load_checkpoint(run)["step"] == 1  # step 2 was abandoned, step 1's checkpoint stands
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_sigterm_to_the_process_group_with_loader_workers(tmp_path):
    """A real process with a DataLoader worker: the scheduler-style SIGTERM to the whole group
    stops it after a step with exit status 4; the worker does not die of it first."""
    run = tmp_path / "run"
    argv = [*SMALL, "--workers", "1", "--epochs", "50", "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastadl.train", *argv],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").is_file() or len(read(run / "metrics.jsonl")) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 4, err[-2000:]
    assert "Traceback" not in err and "resume with:" in err
    state = load_checkpoint(run)
    # The signal lands mid-epoch (a step checkpoint) or during the end-of-epoch validation
    # (the epoch checkpoint is the stop checkpoint): either way the run stops at a step boundary.
    stop_names = {f"step_{state['step']:08d}.pt", f"epoch_{state['epoch']:04d}.pt"}
    assert state["step"] >= 2 and latest_checkpoint(run).name in stop_names


def test_time_based_checkpoints_and_pruning(tmp_path):
    run = tmp_path / "run"
    argv = [*SMALL, "--epochs", "1", "--checkpoint-minutes", "1e-9", "--out", str(run)]
    assert train.main([*argv, "--keep-checkpoints", "0"]) == 0
    names = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
    assert names == ["epoch_0001.pt", *(f"step_{s:08d}.pt" for s in (1, 2, 3, 4))]

    pruned = tmp_path / "pruned"
    argv = [*SMALL, "--epochs", "2", "--checkpoint-every", "1", "--out", str(pruned)]
    assert train.main([*argv, "--keep-checkpoints", "1", "--checkpoint-minutes", "0"]) == 0
    names = sorted(p.name for p in (pruned / "checkpoints").glob("*.pt"))
    assert names == ["epoch_0002.pt", "step_00000008.pt"]


def test_checkpointer_is_due_every_n_steps_and_every_m_minutes(tmp_path):
    now = {"t": 0.0}
    cfg = dataclasses.replace(train_config.resolve("tiny", {}), checkpoint_every=5)
    ck = Checkpointer(
        tmp_path, dataclasses.replace(cfg, checkpoint_minutes=2.0), True, lambda: now["t"]
    )
    assert not ck.due(1) and ck.due(5)
    now["t"] = 119.0
    assert not ck.due(6)
    now["t"] = 120.0
    assert ck.due(7)
    ck.save("step_7", lambda: {"step": 7})
    assert not ck.due(8)  # the clock restarts at each checkpoint
    off = Checkpointer(
        tmp_path, dataclasses.replace(cfg, checkpoint_minutes=0.0), True, lambda: 1e9
    )
    assert not off.due(6)


def test_a_full_disk_stops_with_a_clear_error_and_a_resumable_run(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    argv = [*SMALL, "--epochs", "1", "--out", str(run)]
    usage = checkpoint_module.shutil.disk_usage(tmp_path)
    full = usage._replace(free=10 * 2**20)  # 10 MiB: less than the 64 MiB margin
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: full)
    assert train.main(argv) == 2
    err = capsys.readouterr().err.split("\n", 1)[1]  # after the short-schedule warning
    assert err.startswith("error: not enough free space in ") and str(run) in err
    assert err.count("\n") == 1 and latest_checkpoint(run) is None
    assert not list((run / "checkpoints").glob(".*.tmp"))
    monkeypatch.undo()
    assert train.main(argv) == 0  # space freed: the same command runs the run to its end
    assert load_checkpoint(run)["step"] == 4


def test_torchrun_needs_an_explicit_run_directory(monkeypatch, capsys):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    assert search.main(["--no-progress"]) == 2
    assert "--out is required under torchrun" in capsys.readouterr().err


@pytest.mark.parametrize("module, cfg_module", [(search, config), (train, train_config)])
def test_help_has_a_line_unit_and_the_presets_real_default_for_every_field(module, cfg_module):
    for preset, cfg in cfg_module.PRESETS.items():
        parser = build_parser(module.CLI, ["--preset", preset])
        assert "(default: None)" not in parser.format_help()
        for f in dataclasses.fields(cfg):
            flag = "--" + f.name.replace("_", "-")
            action = next(a for a in parser._actions if flag in a.option_strings)
            assert action.help and len(action.help) > 12, flag
            value = getattr(cfg, f.name)
            shown = ("on" if value else "off") if isinstance(value, bool) else value
            shown = "none" if value is None else shown
            assert f"(default: {shown})" in action.help, (preset, flag, action.help)
            if f.metadata.get("choices"):
                assert list(action.choices) == list(f.metadata["choices"]), flag
            if f.metadata.get("unit"):
                assert f"in {f.metadata['unit']}" in action.help, flag
