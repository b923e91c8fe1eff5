"""The sync-free search steps keep the numbers and the run's safety: the fused Adam of the α/β
step equals torch's default Adam, and a loss that turns non-finite mid-run, found only when the
loop reads the steps' values (every few steps, before a checkpoint), stops the run with the
last good checkpoint on disk, from which ``--resume`` runs to the end."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from fastadl import SuperNet
from fastadl.runtime import steps
from fastadl.runtime.precision import Precision
from fastadl.runtime.rundir.checkpoint import latest_checkpoint, load_checkpoint
from fastadl.runtime.steps import NonFiniteError
from fastadl.search.architect import Architect
from fastadl.search.cli import main
from fastadl.search.searcher import run_search
from tests.search.test_search import MICRO

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_arch_step_adam_is_torchs_default_adam():
    """Fused Adam (its step counters on the device) against the default Adam (which reads
    them on the host) over a few α/β steps of a small supernet."""
    torch.manual_seed(0)
    net = SuperNet(3, layers=2, filter_multiplier=2, block_multiplier=2)
    ref_net = copy.deepcopy(net)
    precision = Precision("off", "cpu")
    arch = Architect(net, net.arch_parameters(), 3e-3, (0.5, 0.999), 1e-3, precision)
    ref = Architect(ref_net, ref_net.arch_parameters(), 3e-3, (0.5, 0.999), 1e-3, precision)
    assert arch.optimizer.defaults["fused"]
    ref.optimizer = torch.optim.Adam(ref.params, lr=3e-3, betas=(0.5, 0.999), weight_decay=1e-3)
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 4):
        x, y = (
            torch.randn(2, 3, 17, 19, generator=gen),
            torch.randint(0, 3, (2, 17, 19), generator=gen),
        )
        torch.testing.assert_close(arch.step(x, y, step), ref.step(x, y, step))
    for a, b in zip(net.arch_parameters(), ref_net.arch_parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_non_finite_loss_mid_run_stops_at_the_next_read_and_resume_runs_to_the_end(
    tmp_path, monkeypatch, capsys
):
    real = steps.segmentation_loss
    calls = {"n": 0}

    def poisoned(logits, masks):  # the weight step's loss (the α/β step has its own name)
        calls["n"] += 1
        loss = real(logits, masks)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(steps, "segmentation_loss", poisoned)
    # 2 steps an epoch, 2 epochs: checkpoints after steps 2 and 4; the NaN at step 3 makes
    # the weights NaN, step 4 runs on them, and the read after step 4 finds it
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as err:
        run_search(dataclasses.replace(MICRO, epochs=2), out, progress=False)
    message = str(err.value)
    assert "non-finite loss at step 3" in message
    assert "steps 3-4" in message and "epoch_0001" in message, message
    assert latest_checkpoint(out).name == "epoch_0001.pt"  # the last good one, step 2 < 3
    state = load_checkpoint(out)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())

    monkeypatch.setattr(steps, "segmentation_loss", real)  # e.g. the cause fixed
    assert main(["--resume", str(out), "--no-progress"]) == 0
    assert "stopped at step 4 (epoch 2)" in capsys.readouterr().out
    state = load_checkpoint(out)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
