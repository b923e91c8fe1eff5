"""The search and training loops on the fast paths: a search step with the ``fused`` and the
``triton`` backend (Triton under its interpreter here) lands where the ``reference`` step does,
and bf16 autocast runs through the fused backend's search step and a training step.

(The retrained network has no mixed ops, so its loop has no backend to choose: its fast-path
coverage is the bf16 step.)
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fastadl.runtime.rundir.checkpoint import load_checkpoint
from fastadl.runtime.rundir.metrics_log import read
from fastadl.search import config
from fastadl.search.searcher import run_search
from fastadl.train import config as train_config
from fastadl.train.trainer import run_train

pytestmark = pytest.mark.usefixtures("one_thread")

# One weight step and one α/β step on 16×16 images, one layer, F = 1, B = 1: small enough for
# the Triton interpreter, big enough to run every op of every edge.
STEP = dataclasses.replace(
    config.resolve("tiny", {}),
    num_images=4,
    image_size=16,
    crop_size=16,
    val_images=1,
    val_batch_size=1,
    layers=1,
    filter_multiplier=1,
    block_multiplier=1,
    epochs=1,
    arch_start_epoch=0,
    batch_size=2,
    max_steps=1,
    workers=0,
    threads=0,
    device="cpu",
    checkpoint_minutes=0.0,
    op_selection="alpha",  # the steps are compared; the selection after them has its own tests
)


def _search(tmp_path, **changes) -> dict:
    cfg = dataclasses.replace(STEP, **changes)
    run = tmp_path / "_".join(f"{k}-{v}" for k, v in changes.items())
    run.parent.mkdir(parents=True, exist_ok=True)
    result = run_search(cfg, run, progress=False)
    assert result.step == 1
    records = [r for r in read(run / "metrics.jsonl") if r["kind"] == "step"]
    assert "arch_loss" in records[0]  # the α/β step ran too
    return load_checkpoint(run)


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> dict:
    """The reference backend's state after the step (what every fast path must reach)."""
    return _search(tmp_path_factory.mktemp("reference"), backend="reference")


@pytest.mark.parametrize("backend", ["fused", "triton"])
def test_a_search_step_on_a_fast_backend_matches_the_reference_step(tmp_path, ref, backend):
    if backend == "triton":
        pytest.importorskip("triton")
    fast = _search(tmp_path, backend=backend)
    assert ref["model"].keys() == fast["model"].keys()
    for k, v in ref["model"].items():
        torch.testing.assert_close(fast["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.equal(ref["model"]["alphas"], torch.zeros_like(ref["model"]["alphas"]))


def test_bf16_search_step_with_the_fused_backend(tmp_path, ref):
    bf16 = _search(tmp_path, backend="fused", amp="bf16")
    for name in ("alphas", "betas"):
        assert bf16["model"][name].dtype == torch.float32
        # Adam's first step moves each entry by ±lr along its gradient's sign, from the same
        # seeded start in both runs: where bf16 rounding kept the sign, the entries agree.
        same = (bf16["model"][name] - ref["model"][name]).abs() < STEP.arch_lr / 2
        assert same.float().mean() >= 0.9, name
    assert all(torch.isfinite(v).all() for v in bf16["model"].values() if v.is_floating_point())


def test_bf16_training_step(tmp_path):
    cfg = dataclasses.replace(
        train_config.resolve("tiny", {}),
        num_images=4,
        image_size=32,
        crop_size=32,
        val_images=1,
        val_batch_size=1,
        batch_size=2,
        epochs=1,
        max_steps=2,
        workers=0,
        threads=0,
        device="cpu",
        amp="bf16",
    )
    result = run_train(cfg, tmp_path / "run", progress=False)
    assert result.step == 2
    losses = [r["loss"] for r in read(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)
    state = load_checkpoint(tmp_path / "run")
    assert all(v.dtype != torch.bfloat16 for v in state["model"].values())  # weights stay fp32
