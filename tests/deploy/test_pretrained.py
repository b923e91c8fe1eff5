"""Model folders (fastadl/deploy/pretrained.py): config.json + model.safetensors + README.md."""

from __future__ import annotations

import json

import pytest
import torch

from fastadl.deploy import exporter
from fastadl.deploy.inference import model_from_checkpoint
from fastadl.deploy.model_card import cell_text, cost_lines, search_summary
from fastadl.deploy.pretrained import from_pretrained, is_model_folder, save_pretrained
from fastadl.evaluate import main as evaluate_main
from fastadl.export import main as export_main
from fastadl.runtime.rundir.checkpoint import CheckpointError
from fastadl.runtime.rundir.metrics_log import read
from fastadl.space.genotype import PAPER_GENOTYPE
from fastadl.train.config import resolve
from fastadl.train.trainer import run_train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 4-step tiny training run on 32×32 synthetic scenes (one epoch, one checkpoint)."""
    run = tmp_path_factory.mktemp("train")
    overrides = {"num_images": 16, "image_size": 32, "crop_size": 32, "batch_size": 4}
    overrides |= {"epochs": 1, "val_images": 2, "workers": 0, "threads": 0, "device": "cpu"}
    run_train(resolve("tiny", overrides), run, progress=False)
    return run


@pytest.fixture(scope="module")
def folder(run_dir, tmp_path_factory):
    return save_pretrained(run_dir, tmp_path_factory.mktemp("hub") / "autodeeplab-tiny")


def test_from_pretrained_of_save_pretrained_gives_bitwise_the_same_outputs(run_dir, folder):
    original = model_from_checkpoint(run_dir, torch.device("cpu"))
    loaded = from_pretrained(folder)
    assert not loaded.model.training
    x = torch.randn(2, 3, 37, 45, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), original.model(x), rtol=0, atol=0)
    for (k, a), (_, b) in zip(
        loaded.model.state_dict().items(), original.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    assert loaded.genotype == original.genotype
    assert loaded.class_names == original.class_names and loaded.palette == original.palette
    assert loaded.config == original.config and loaded.step == original.step


def test_the_folder_has_the_hub_layout_and_the_card_holds_genotype_and_figures(run_dir, folder):
    assert is_model_folder(folder) and not is_model_folder(run_dir)
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in folder.iterdir()}
    config = json.loads((folder / "config.json").read_text())
    loaded = from_pretrained(folder)
    assert config["genotype"] == loaded.genotype.to_dict()
    assert config["model"] == "tiny" and config["num_classes"] == 6
    last_epoch = [r for r in read(run_dir / "metrics.jsonl") if r["kind"] == "epoch"][-1]
    assert config["results"]["val_miou"] == last_epoch["val_miou"]
    assert config["results"]["training"]["steps"] == last_epoch["step"] == 4
    assert config["results"]["training"]["seconds_estimate"] > 0

    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: fastadl\npipeline_tag: image-segmentation\n")
    for line in cell_text(loaded.genotype):  # every kept edge with its op
        assert line in card
    assert json.dumps(loaded.genotype.to_dict()) in card
    assert f"validation mIoU: {last_epoch['val_miou']:.4f}" in card
    assert "training cost: 4 steps, 1 epochs" in card
    assert "search cost: 3 P100 GPU-days" in card  # paper:4 keeps the paper's cell
    assert "![plots/curves.png](plots/curves.png)" in card
    assert (folder / "plots" / "curves.png").stat().st_size > 0
    assert "from_pretrained" in card and f"--checkpoint {folder.name}" in card


def test_export_writes_a_folder_that_evaluate_reads(run_dir, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["--checkpoint", str(run_dir), "--format", "pretrained", "--out", str(out)]
    assert export_main(args) == 0
    assert "wrote the model folder" in capsys.readouterr().out
    assert is_model_folder(out)
    common = ["--limit", "2", "--workers", "0"]
    assert evaluate_main(["--checkpoint", str(run_dir), *common, "--out", str(tmp_path / "a")]) == 0
    assert evaluate_main(["--checkpoint", str(out), *common, "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "eval.json").read_text()) for d in "ab")
    assert a["data"] == b["data"] == "synthetic"
    assert a["confusion"] == b["confusion"] and a["miou"] == b["miou"]


def test_export_of_a_folder_exports_its_network(folder, tmp_path, monkeypatch):
    """The export CLI on a folder, up to the compiler (tests/deploy/test_export.py compiles)."""
    seen = {}

    def write(net, x, out, metadata):
        seen.update(net=net, x=x, metadata=metadata)
        out.write_bytes(b"package")

    monkeypatch.setattr(exporter, "write_aoti", write)
    out = tmp_path / "model.pt2"
    assert export_main(["--checkpoint", str(folder), "--size", "40x48", "--out", str(out)]) == 0
    assert seen["metadata"]["fastadl.class_names"].split("\n")[1] == "striped disc"
    assert seen["metadata"]["fastadl.input_size"] == "40x48"
    x = torch.randn(1, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # BatchNorm folded into the convs: the same function up to rounding
        got, expected = seen["net"](x), from_pretrained(folder).model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_export_needs_a_size_except_for_a_folder(folder, tmp_path, capsys):
    assert export_main(["--checkpoint", str(folder), "--out", str(tmp_path / "m.pt2")]) == 2
    err = capsys.readouterr().err
    assert err == "error: --size HxW is needed for --format aoti\n"


def test_a_copy_of_a_folder_keeps_its_figures(folder, tmp_path):
    copy = save_pretrained(folder, tmp_path / "copy")
    assert (
        json.loads((copy / "config.json").read_text())["results"]
        == json.loads((folder / "config.json").read_text())["results"]
    )
    assert (copy / "plots" / "curves.png").is_file()


def test_bad_folders_are_named(run_dir, folder, tmp_path):
    with pytest.raises(CheckpointError, match="not a model folder"):
        from_pretrained(run_dir)
    broken = save_pretrained(folder, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        from_pretrained(broken)
    newer = save_pretrained(folder, tmp_path / "newer")
    config = json.loads((newer / "config.json").read_text())
    (newer / "config.json").write_text(json.dumps({**config, "fastadl_model_folder": 99}))
    with pytest.raises(CheckpointError, match="upgrade fastadl"):
        from_pretrained(newer)


def test_the_search_behind_a_genotype_is_summarised_from_its_run(tmp_path):
    run = tmp_path / "search"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"batch_size": 2}))
    records = [  # images_per_s is the running average since the epoch began
        {"kind": "step", "step": 1, "epoch": 1, "images_per_s": 1.0},
        {"kind": "step", "step": 2, "epoch": 1, "images_per_s": 2.0},
        {"kind": "epoch", "step": 2, "epoch": 1, "val_miou": 0.25},
        {"kind": "step", "step": 3, "epoch": 2, "images_per_s": 4.0},
        {"kind": "epoch", "step": 3, "epoch": 2, "val_miou": 0.5},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    genotype = PAPER_GENOTYPE
    (run / "genotype.json").write_text(genotype.to_json())
    for spec in (run, run / "genotype.json"):
        summary = search_summary(str(spec), genotype)
        # epoch 1: 2 steps · 2 images / 2 images/s = 2 s; epoch 2: 1 · 2 / 4 = 0.5 s
        assert summary == {
            "run": str(run), "steps": 3, "epochs": 2, "seconds_estimate": 2.5, "val_miou": 0.5
        }  # fmt: skip
    assert search_summary(str(tmp_path / "gone" / "genotype.json"), genotype).startswith(
        "not recorded"
    )
    lines = cost_lines("search cost", search_summary(str(run), genotype))
    assert lines == [
        "- search cost: 3 steps, 2 epochs, compute ≈ 2 s (from metrics.jsonl's images/s: one "
        "process, validation and checkpoints not counted)"
    ]
