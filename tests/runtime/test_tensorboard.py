"""TensorBoard event files in search and training run directories (issue 27): the scalars,
images, histograms and text a user looks for, --no-tensorboard, and resume without duplicates."""

from __future__ import annotations

import dataclasses

import pytest
from small_runs import SMALL_TRAIN

from fastadl.search.config import resolve as search_resolve
from fastadl.search.searcher import run_search
from fastadl.train.cli import main as train_main

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is a dependency of fastadl (setup.py); install it to read event files",
)

pytestmark = pytest.mark.usefixtures("one_thread")

# 2 layers, 16 synthetic 32×32 images, 2 steps an epoch, α/β from the second epoch.
MICRO = dataclasses.replace(
    search_resolve("tiny", {}),
    num_images=16, image_size=32, crop_size=32, val_images=4, layers=2, filter_multiplier=2,
    block_multiplier=2, epochs=2, arch_start_epoch=1, batch_size=4, backend="reference",
    device="cpu", workers=0, threads=0,
    op_selection="alpha",  # event files here; perturbation has its own test
)  # fmt: skip


def read_events(run_dir):
    """Everything in the run directory's event files (all of it: size_guidance 0)."""
    acc = event_accumulator.EventAccumulator(
        str(run_dir),
        size_guidance={
            event_accumulator.SCALARS: 0,
            event_accumulator.IMAGES: 0,
            event_accumulator.HISTOGRAMS: 0,
            event_accumulator.TENSORS: 0,
        },
    )
    return acc.Reload()


def text_of(acc, tag: str) -> str:
    return acc.Tensors(tag)[-1].tensor_proto.string_val[0].decode()


def test_search_run_has_scalars_images_histograms_and_the_genotype(tmp_path):
    run = tmp_path / "search"
    run_search(MICRO, run, progress=False)
    assert list(run.glob("events.out.tfevents.*"))
    acc = read_events(run)
    tags = acc.Tags()
    for tag in ("train/loss", "train/lr", "train/arch_loss", "train/images_per_s",
                "val/val_miou", "val/val_pixel_acc", "arch/alpha_entropy", "arch/beta_entropy",
                "arch/alpha_max_mean", "arch/beta_max_mean", "arch/skip_count",
                "arch/op_shares/skip"):  # fmt: skip
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in acc.Scalars("val/val_miou")] == [2, 4]
    for tag in ("arch/alpha_softmax", "arch/beta_normalized", "plots/betas", "plots/alphas",
                "plots/curves", "plots/genotype_cell", "plots/genotype_path"):  # fmt: skip
        assert tag in tags["images"], tag
    alpha = acc.Images("arch/alpha_softmax")[-1]
    assert (alpha.height, alpha.width) == (5 * 12, 8 * 12)  # E = 5 edges × K = 8 ops, 12 px each
    for tag in ("arch/alpha_softmax", "arch/beta_normalized", "arch/alpha_max_per_edge"):
        assert tag in tags["histograms"], tag
    text = text_of(acc, "genotype/text_summary")
    genotype = (run / "genotype.json").read_text()
    assert "block 2:" in text and "path" in text
    for op in ("skip_connect", "sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3", "avg_pool_3x3"):
        assert (op in text) == (op in genotype), op
    for name in ("genotype_cell", "genotype_path"):
        for ext in ("png", "svg"):
            assert (run / "plots" / f"{name}.{ext}").stat().st_size > 1000, (name, ext)


def test_training_run_has_scalars_images_and_the_genotype(tmp_path):
    run = tmp_path / "train"
    assert train_main([*SMALL_TRAIN, "--no-progress", "--epochs", "2", "--out", str(run)]) == 0
    acc = read_events(run)
    tags = acc.Tags()
    for tag in ("train/loss", "train/lr", "train/images_per_s", "val/val_miou"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 9))
    assert "plots/curves" in tags["images"]
    assert "sep_conv_3x3" in text_of(acc, "genotype/text_summary")  # paper:4's cell


def test_no_tensorboard_writes_no_event_files(tmp_path):
    run = tmp_path / "train"
    argv = [*SMALL_TRAIN, "--no-progress", "--epochs", "1", "--no-tensorboard", "--out", str(run)]
    assert train_main(argv) == 0
    assert (run / "metrics.jsonl").is_file()
    assert not list(run.glob("events.out.tfevents.*"))


def test_a_resumed_search_logs_every_step_once_with_the_straight_runs_values(tmp_path):
    straight = run_search(dataclasses.replace(MICRO, max_steps=4), tmp_path / "a", progress=False)
    run_search(dataclasses.replace(MICRO, max_steps=3), tmp_path / "b", progress=False)
    # as if the process had died after step 3 before checkpointing it: the run continues from
    # the end of epoch 1 (step 2), and what the first process logged for step 3 must not count
    (tmp_path / "b" / "checkpoints" / "latest").write_text("epoch_0001.pt\n")
    resumed = run_search(
        dataclasses.replace(MICRO, max_steps=4), tmp_path / "b", resume=True, progress=False
    )
    assert straight.step == resumed.step == 4
    a, b = read_events(tmp_path / "a"), read_events(tmp_path / "b")
    for tag in ("train/loss", "train/arch_loss", "val/val_miou"):
        assert [(e.step, e.value) for e in a.Scalars(tag)] == [
            (e.step, e.value) for e in b.Scalars(tag)
        ], tag
