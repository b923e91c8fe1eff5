"""Evaluation and prediction from a tiny training checkpoint, and multi-scale inference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fastadl.data.synthetic import PALETTE, render_scene
from fastadl.data.transforms import to_tensors
from fastadl.deploy.inference import MultiScaleInference, model_from_checkpoint
from fastadl.evaluate import main as evaluate_main
from fastadl.predict import main as predict_main
from fastadl.runtime.rundir.checkpoint import load_checkpoint, save_checkpoint
from fastadl.space.genotype import PAPER_GENOTYPE
from fastadl.train.config import resolve
from fastadl.train.trainer import run_train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 4-step tiny training run on 32×32 synthetic scenes (one epoch, one checkpoint)."""
    run = tmp_path_factory.mktemp("train")
    cfg = resolve(
        "tiny",
        {
            "num_images": 16,
            "image_size": 32,
            "crop_size": 32,
            "batch_size": 4,
            "epochs": 1,
            "val_images": 2,
            "workers": 0,
            "threads": 0,
            "device": "cpu",
        },
    )
    run_train(cfg, run, progress=False)
    return run


def test_evaluate_prints_the_table_and_writes_results(run_dir, capsys):
    assert evaluate_main(["--checkpoint", str(run_dir), "--limit", "3", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "striped disc" in out and "mIoU" in out and "pixel accuracy" in out
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["images"] == 3 and result["scales"] == [1.0] and result["flip"] is False
    assert 0.0 <= result["miou"] <= 1.0 and 0.0 <= result["pixel_accuracy"] <= 1.0
    assert len(result["per_class_iou"]) == 6
    counts = np.array(result["confusion"])
    assert counts.shape == (6, 6) and counts.sum() == 3 * 32 * 32  # no ignored pixels here
    assert (run_dir / "plots" / "confusion.png").stat().st_size > 0


def test_evaluate_multi_scale_with_flip_to_another_directory(run_dir, tmp_path, capsys):
    out_dir = tmp_path / "eval"
    args = ["--checkpoint", str(run_dir), "--limit", "2", "--workers", "0"]
    assert evaluate_main([*args, "--multi-scale", "--flip", "--out", str(out_dir)]) == 0
    result = json.loads((out_dir / "eval.json").read_text())
    assert result["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and result["flip"] is True
    assert (out_dir / "plots" / "confusion.png").is_file()
    assert "+ flip" in capsys.readouterr().out


def test_evaluate_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert evaluate_main(["--checkpoint", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nothing" in err and "Traceback" not in err


def test_weights_that_do_not_fit_the_saved_genotype_are_a_clear_error(run_dir, tmp_path, capsys):
    state = load_checkpoint(run_dir)
    g = PAPER_GENOTYPE.to_dict()
    g["path"] = [0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3]  # another network than the weights'
    state["genotype"] = g
    path = save_checkpoint(tmp_path, state, "tampered")
    assert evaluate_main(["--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert "do not fit" in err and str(path) in err


def test_multi_scale_inference_averages_probabilities():
    torch.manual_seed(0)
    net = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 9, 11)  # odd size: every scale is resized back to exactly 9×11
    single = MultiScaleInference(net, (1.0,))(x)
    torch.testing.assert_close(single, net(x).softmax(1))
    flipped = MultiScaleInference(net, (1.0,), flip=True)(x)
    torch.testing.assert_close(
        flipped, (net(x).softmax(1) + net(x.flip(-1)).flip(-1).softmax(1)) / 2
    )
    multi = MultiScaleInference(net, (0.5, 1.0, 1.5), flip=True)(x)
    assert multi.shape == (2, 4, 9, 11)
    torch.testing.assert_close(multi.sum(1), torch.ones(2, 9, 11))


def test_predict_writes_masks_and_overlays_and_reports_bad_files(run_dir, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    good = []
    for i, (h, w) in enumerate([(40, 52), (33, 33)]):
        img, _ = render_scene(np.random.default_rng(i), 64)
        path = images / f"scene{i}.png"
        Image.fromarray(img[:h, :w]).save(path)
        good.append(path)
    corrupt = images / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    missing = images / "missing.jpg"
    out = tmp_path / "pred"
    files = [str(good[0]), str(corrupt), str(missing), str(good[1])]
    assert predict_main([*files, "--checkpoint", str(run_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "2 of 4 image(s) failed" in err and str(corrupt) in err and str(missing) in err
    colours = {tuple(c) for c in PALETTE}
    for path, (h, w) in zip(good, [(40, 52), (33, 33)], strict=True):
        mask = Image.open(out / f"{path.stem}_mask.png")
        assert mask.size == (w, h) and mask.mode == "P"
        assert np.asarray(mask).max() < len(PALETTE)  # pixel values are class ids
        rgb = np.asarray(mask.convert("RGB")).reshape(-1, 3)
        assert {tuple(int(v) for v in c) for c in np.unique(rgb, axis=0)} <= colours
        overlay = Image.open(out / f"{path.stem}_overlay.png")
        assert overlay.size == (w, h) and overlay.mode == "RGB"
    assert not list(out.glob("corrupt*")) and not list(out.glob("missing*"))


def test_predict_mask_matches_the_model_argmax(run_dir, tmp_path):
    img, _ = render_scene(np.random.default_rng(7), 32)
    path = tmp_path / "x.png"
    Image.fromarray(img).save(path)
    assert predict_main([str(path), "--checkpoint", str(run_dir), "--out", str(tmp_path)]) == 0
    loaded = model_from_checkpoint(run_dir, torch.device("cpu"))
    x, _ = to_tensors(img, np.zeros(img.shape[:2], dtype=np.int64))
    with torch.no_grad():
        expected = loaded.model(x[None])[0].argmax(0).numpy()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x_mask.png")), expected)
