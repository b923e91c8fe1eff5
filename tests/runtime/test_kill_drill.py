"""A few kills of the kill drill in CI (scripts/kill_drill.py runs all 20 for
docs/RELIABILITY.md): a search SIGKILLed inside a step, during validation and in the middle
of a checkpoint write, restarted each time with the same command, ends bitwise where an
uninterrupted search ends."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kill_drill.py"

# 24 synthetic 32×32 images: 3 steps of 4 an epoch, 3 epochs; a checkpoint every 2 steps.
FLAGS = [
    "--num-images", "24", "--image-size", "32", "--crop-size", "32", "--val-images", "8",
    "--layers", "2", "--filter-multiplier", "2", "--block-multiplier", "1", "--epochs", "3",
    "--arch-start-epoch", "1", "--batch-size", "4", "--workers", "0", "--threads", "1",
    "--checkpoint-every", "2", "--checkpoint-minutes", "0", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def drill():
    spec = importlib.util.spec_from_file_location("kill_drill", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_drill"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def drilled(drill, tmp_path_factory):
    work = tmp_path_factory.mktemp("drill")
    return work, drill.run_drill("search", 3, work, FLAGS, seed=1)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and process groups are POSIX")
def test_three_kills_one_per_phase_end_bitwise_equal(drilled):
    _, result = drilled
    assert [k.aimed for k in result.kills] == ["step", "validation", "checkpoint"]
    assert result.alive_at_kill == 3, [(k.aimed, k.observed) for k in result.kills]
    assert not result.mismatches, result.mismatches
    assert result.passed


def test_the_comparison_sees_a_difference(drill, drilled, tmp_path):
    """The drill's judge can fail: one changed weight or metrics record is reported."""
    import shutil

    import torch

    from fastadl.runtime.rundir.checkpoint import latest_checkpoint

    work, _ = drilled
    ref, changed = work / "reference", tmp_path / "changed"
    shutil.copytree(ref, changed)
    assert drill._compare(ref, changed) == []
    path = latest_checkpoint(changed)
    state = torch.load(path, weights_only=True)
    a = state["model"]["alphas"]
    a[0, 0] = torch.nextafter(a[0, 0], a[0, 0] + 1)  # one ulp: also where α is ±1e4 (perturbation)
    torch.save(state, path)
    lines = (changed / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"step": 2', '"step": 2, "extra": 1')
    (changed / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    found = drill._compare(ref, changed)
    assert "model[alphas] differs" in found and any("metrics.jsonl" in f for f in found)
