"""Search under 2 gloo processes equals 1 process over the same global batch."""

import dataclasses

import torch
from ddp_utils import run_processes

from fastadl.runtime.rundir.checkpoint import load_checkpoint
from fastadl.search.config import resolve
from fastadl.search.searcher import run_search

CFG = dataclasses.replace(
    resolve("tiny", {}),
    num_images=16,
    image_size=32,
    crop_size=32,
    val_images=4,
    layers=2,
    filter_multiplier=2,
    block_multiplier=2,
    epochs=2,
    arch_start_epoch=1,
    backend="reference",
    device="cpu",
    op_selection="alpha",  # perturbation under several processes is not tested
)


def _search(cfg, run_dir) -> None:
    run_search(cfg, run_dir, progress=False)


def trained_parameters(run_dir):
    state = load_checkpoint(run_dir)["model"]
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


def test_two_process_search_matches_one_process_over_the_global_batch(tmp_path):
    # 2 ranks × batch 2 ≡ 1 process × batch 4 in 2 micro-batches (items dealt round-robin,
    # each micro-batch with its own BatchNorm statistics, like each rank's).
    run_processes(_search, 2, dataclasses.replace(CFG, batch_size=2), tmp_path / "ddp")
    run_search(
        dataclasses.replace(CFG, batch_size=4, accumulate=2), tmp_path / "one", progress=False
    )
    ddp, one = trained_parameters(tmp_path / "ddp"), trained_parameters(tmp_path / "one")
    assert ddp.keys() == one.keys()
    assert (
        load_checkpoint(tmp_path / "ddp")["step"] == load_checkpoint(tmp_path / "one")["step"] == 4
    )
    for k in one:
        torch.testing.assert_close(ddp[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.equal(one["alphas"], torch.zeros_like(one["alphas"]))
