"""The search engine: run files, exact resume, α/β step without weight gradients, NaN stop."""

import dataclasses
import json

import pytest
import torch

from fastadl.nn import SuperNet
from fastadl.runtime import steps
from fastadl.runtime.precision import Precision
from fastadl.runtime.rundir.checkpoint import latest_checkpoint, load_checkpoint
from fastadl.runtime.steps import NonFiniteError
from fastadl.search.architect import Architect
from fastadl.search.cli import main
from fastadl.search.config import ConfigError, SearchConfig, resolve
from fastadl.search.searcher import run_search

# A search small enough for a test: 2 layers, 16 synthetic 32×32 images, 2 steps an epoch.
MICRO = dataclasses.replace(
    resolve("tiny", {}),
    num_images=16,
    image_size=32,
    crop_size=32,
    val_images=4,
    layers=2,
    filter_multiplier=2,
    block_multiplier=2,
    epochs=3,
    arch_start_epoch=1,
    batch_size=4,
    backend="reference",
    device="cpu",
    op_selection="alpha",  # the loop's tests; perturbation has its own (test_perturbation.py)
)


def params_of(run_dir):
    state = load_checkpoint(run_dir)["model"]
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


def test_search_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    code = main(
        [
            "--out",
            str(out),
            "--no-progress",
            "--num-images",
            "16",
            "--image-size",
            "32",
            "--crop-size",
            "32",
            "--val-images",
            "4",
            "--layers",
            "2",
            "--filter-multiplier",
            "2",
            "--block-multiplier",
            "2",
            "--epochs",
            "2",
            "--arch-start-epoch",
            "1",
            "--batch-size",
            "4",
            "--backend",
            "reference",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    for name in ("config.json", "split.json", "metrics.jsonl", "genotype.json"):
        assert (out / name).is_file(), name
    for name in ("betas.png", "alphas.png", "curves.png"):
        assert (out / "plots" / name).stat().st_size > 1000, name
    assert latest_checkpoint(out).is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layers"] == 2 and cfg["data"] == "synthetic"
    split = json.loads((out / "split.json").read_text())
    assert not set(split["trainA"]) & set(split["trainB"])
    assert len(split["trainA"]) + len(split["trainB"]) == 16
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert any("arch_loss" in r for r in records if r["kind"] == "step")
    # a second run into the same directory is refused rather than overwriting it
    assert main(["--out", str(out), "--no-progress"]) == 2


def test_resume_is_exact(tmp_path):
    # 2 steps an epoch: stopping after 3 stops mid-epoch, inside the α/β phase
    straight = run_search(dataclasses.replace(MICRO, max_steps=6), tmp_path / "a", progress=False)
    assert straight.step == 6
    first = run_search(dataclasses.replace(MICRO, max_steps=3), tmp_path / "b", progress=False)
    assert first.step == 3
    resumed = run_search(
        dataclasses.replace(MICRO, max_steps=6), tmp_path / "b", resume=True, progress=False
    )
    assert resumed.step == 6
    a, b = params_of(tmp_path / "a"), params_of(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(a["alphas"], b["alphas"]) and torch.equal(a["betas"], b["betas"])
    steps_logged = [
        json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps_logged.count(4) == 2  # one step record and one epoch record, nothing duplicated


def test_arch_step_leaves_weight_gradients_untouched():
    torch.manual_seed(0)
    net = SuperNet(3, layers=2, filter_multiplier=2, block_multiplier=2)
    arch = Architect(net, net.arch_parameters(), 3e-3, (0.9, 0.999), 1e-3, Precision("off", "cpu"))
    before = [a.detach().clone() for a in net.arch_parameters()]
    weights_before = [p.detach().clone() for p in net.weight_parameters()]
    x, y = torch.randn(2, 3, 17, 19), torch.randint(0, 3, (2, 17, 19))
    arch.step(x, y, step=1)
    assert all(p.grad is None for p in net.weight_parameters())
    assert all(not torch.equal(a, b) for a, b in zip(net.arch_parameters(), before, strict=True))
    assert all(
        torch.equal(p, q) for p, q in zip(net.weight_parameters(), weights_before, strict=True)
    )


def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real = steps.segmentation_loss
    calls = {"n": 0}

    def poisoned(logits, masks):
        calls["n"] += 1
        loss = real(logits, masks)
        return loss * float("nan") if calls["n"] == 4 else loss  # the 4th weight step

    monkeypatch.setattr(steps, "segmentation_loss", poisoned)
    cfg = dataclasses.replace(MICRO, checkpoint_every=1)
    with pytest.raises(NonFiniteError, match="step 4"):
        run_search(cfg, tmp_path, progress=False)
    state = load_checkpoint(tmp_path)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_cli_reports_nan_without_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        steps, "segmentation_loss", lambda logits, masks: logits.sum() * float("nan")
    )
    code = main(
        [
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
            "--num-images",
            "16",
            "--image-size",
            "32",
            "--crop-size",
            "32",
            "--layers",
            "1",
            "--filter-multiplier",
            "2",
            "--block-multiplier",
            "1",
            "--batch-size",
            "4",
            "--backend",
            "reference",
        ]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and f"--resume {tmp_path / 'r'}" in err, err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--preset", "nope"], "invalid choice"),
        (["--batch-size", "0"], "batch_size"),
        (["--accumulate", "3", "--batch-size", "4"], "accumulate"),
        (["--data", "cityscapes", "--data-root", "/does/not/exist"], "/does/not/exist"),
        (["--data", "mnist"], "--data: invalid choice: 'mnist'"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, capsys, argv, fragment):
    try:
        code = main(["--out", str(tmp_path / "r"), "--no-progress", *argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "r" / "config.json").exists()


def test_cuda_graphs_off_cuda_is_a_one_line_error(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "r"), "--cuda-graphs", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --cuda-graphs needs a CUDA device") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_presets_validate():
    assert resolve("paper", {}).crop_size == 321
    with pytest.raises(ConfigError, match="unknown config field"):
        resolve("tiny", {"colour": 1})
    with pytest.raises(ConfigError):
        SearchConfig.from_dict({"layers": 0})


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_search_keeps_arch_parameters_float32(tmp_path, amp):
    cfg = dataclasses.replace(MICRO, amp=amp, epochs=2, max_steps=3)
    result = run_search(cfg, tmp_path, progress=False)
    assert result.step == 3
    state = load_checkpoint(tmp_path)
    assert state["model"]["alphas"].dtype == torch.float32
    assert state["model"]["betas"].dtype == torch.float32
    assert torch.isfinite(state["model"]["alphas"]).all()
    # fp16 runs keep a live GradScaler state for each optimizer; bf16 needs none
    scale = state["w_scaler"].get("scale")
    assert (scale is not None) == (amp == "fp16")
    assert (state["architect"]["scaler"].get("scale") is not None) == (amp == "fp16")
