"""Run-directory persistence for resuming: atomic checkpoints (round trip, crash safety, pruning,
plain-data rule, RNG round trip) and metrics.jsonl (NaN as null, torn lines, truncate on resume)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from fastadl.runtime.rundir.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fastadl.runtime.rundir.metrics_log import MetricsLog, read, truncate_after


def _state(step: int) -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()  # populate momentum buffers so the optimizer state is non-trivial
    return {
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "config": {"preset": "tiny", "layers": 4, "lr": 0.025, "name": None},
        "rng": rng_state(),
    }


def test_round_trip_through_run_dir_and_file(tmp_path):
    state = _state(7)
    path = save_checkpoint(tmp_path, state, "epoch_0007")
    assert path == tmp_path / "checkpoints" / "epoch_0007.pt"
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "epoch_0007.pt"
    for source in (tmp_path, tmp_path / "checkpoints", path):
        loaded = load_checkpoint(source)
        assert loaded["step"] == 7 and loaded["config"] == state["config"]
        torch.testing.assert_close(loaded["model"], state["model"])
        torch.testing.assert_close(
            loaded["optimizer"]["state"][0]["momentum_buffer"],
            state["optimizer"]["state"][0]["momentum_buffer"],
        )
    # weights_only loading must work without fastadl's help: only plain values inside
    torch.load(path, weights_only=True)
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_crash_during_save_keeps_previous_checkpoint_and_latest(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"step": 1, "w": torch.ones(3)}, "step_1")

    def exploding_save(obj, f, *args, **kwargs):
        f.write(b"partial garbage")  # a real crash leaves half a file behind
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, {"step": 2, "w": torch.zeros(3)}, "step_2")
    monkeypatch.undo()

    ckpt_dir = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["latest", "step_1.pt"]
    loaded = load_checkpoint(tmp_path)
    assert loaded["step"] == 1
    torch.testing.assert_close(loaded["w"], torch.ones(3))


def test_pruning_keeps_newest_of_the_series_and_other_names(tmp_path):
    save_checkpoint(tmp_path, {"v": 0}, "best")
    for e in (1, 2, 3, 4, 10):  # 10 after 4: order is numeric, not by string
        save_checkpoint(tmp_path, {"v": e}, f"epoch_{e}", keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert names == ["best.pt", "epoch_10.pt", "epoch_4.pt"]
    assert latest_checkpoint(tmp_path).name == "epoch_10.pt"


def test_pruning_never_removes_the_file_just_written(tmp_path):
    # resuming from an earlier epoch: the new, lower-numbered file must survive keep=1
    save_checkpoint(tmp_path, {"v": 9}, "epoch_9", keep=0)
    save_checkpoint(tmp_path, {"v": 5}, "epoch_5", keep=1)
    assert (tmp_path / "checkpoints" / "epoch_5.pt").is_file()
    assert load_checkpoint(tmp_path)["v"] == 5


def test_missing_and_corrupt_checkpoints_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="latest"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.pt"):  # CheckpointError is one
        load_checkpoint(tmp_path / "nope.pt")
    path = save_checkpoint(tmp_path, {"w": torch.randn(100)}, "step_1")
    path.write_bytes(path.read_bytes()[:50])  # truncated
    with pytest.raises(CheckpointError, match="step_1.pt"):
        load_checkpoint(tmp_path)


def test_non_plain_values_are_refused_before_writing(tmp_path):
    @dataclass
    class Config:
        lr: float = 0.1

    with pytest.raises(TypeError, match=r"state\['config'\].*Config"):
        save_checkpoint(tmp_path, {"config": Config()}, "step_1")
    with pytest.raises(TypeError, match=r"state\['x'\]\[1\]"):
        save_checkpoint(tmp_path, {"x": [1, np.float64(2.0)]}, "step_1")
    assert latest_checkpoint(tmp_path) is None


def _draw() -> tuple:
    # gauss/randn first: they consume the cached second Gaussian the state must carry
    py = (random.gauss(0, 1), random.random())
    return (py, [np.random.randn(), *np.random.rand(3).tolist()], torch.rand(3))


def test_rng_round_trip_reproduces_random_numbers(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian in python's state
    np.random.randn()
    save_checkpoint(tmp_path, {"rng": rng_state()}, "step_1")
    expected = _draw()
    _draw()  # move every generator on
    set_rng_state(load_checkpoint(tmp_path)["rng"])
    got = _draw()
    assert got[0] == expected[0] and got[1] == expected[1]
    torch.testing.assert_close(got[2], expected[2])


def test_metrics_log_writes_strict_json_lines_with_nan_as_null(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    log = MetricsLog(path)
    log.append({"step": 1, "loss": 0.5, "val_miou": float("nan"), "lr": torch.tensor(0.025)})
    log.append({"step": 2, "loss": float("inf"), "per_class": [0.25, float("nan")]})
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and "NaN" not in lines[0] and "Infinity" not in lines[1]
    records = read(path)
    assert records[0] == {"step": 1, "loss": 0.5, "val_miou": None, "lr": pytest.approx(0.025)}
    assert records[1] == {"step": 2, "loss": None, "per_class": [0.25, None]}


def test_metrics_log_read_skips_a_torn_last_line_but_not_a_broken_middle(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert MetricsLog.read(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        MetricsLog.read(path)
    assert MetricsLog.read(tmp_path / "missing.jsonl") == []


def test_truncate_after_keeps_records_up_to_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    log.append({"kind": "header", "preset": "tiny"})  # no step: kept
    for step in range(1, 6):
        log.append({"kind": "train", "step": step, "loss": 1.0 / step})
    assert truncate_after(path, "step", 3) == 4
    assert [r.get("step") for r in read(path)] == [None, 1, 2, 3]
    log.append({"kind": "train", "step": 4, "loss": 0.1})  # the resumed run continues the file
    assert [r.get("step") for r in read(path)] == [None, 1, 2, 3, 4]
    assert not list(tmp_path.glob("*.tmp"))
    assert truncate_after(tmp_path / "missing.jsonl", "step", 3) == 0
