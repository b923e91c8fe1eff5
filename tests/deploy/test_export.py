"""Export pieces that need no AOTInductor compile: BatchNorm folding, the fixed-size rule,
bf16 casting, ONNX export (checked with onnxruntime), and one-line errors of the export CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import EXPORT_SIZE, scene, tiny_trained_run
from torch import nn

from fastadl.data.transforms import to_tensors
from fastadl.deploy.exporter import CastingNetwork
from fastadl.deploy.fixed_size import FixedSizeInference, fitted_size
from fastadl.deploy.inference import model_from_checkpoint
from fastadl.export import main as export_main
from fastadl.nn.derived.autodeeplab import AutoDeepLab
from fastadl.nn.derived.fold_batchnorm import count_batchnorms, fold_batchnorm
from fastadl.runtime.rundir.checkpoint import load_checkpoint, save_checkpoint
from fastadl.space.genotype import PAPER_GENOTYPE
from fastadl.train.model import paper_prefix

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_trained_run(tmp_path_factory.mktemp("train"))


def _randomise_batchnorms(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters far from their 0/1 defaults."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)


def test_folding_every_batchnorm_keeps_the_network_function():
    torch.manual_seed(0)
    # the full 12-cell paper path (every level, up and down moves, strided skips)
    model = AutoDeepLab.from_preset("tiny", PAPER_GENOTYPE, num_classes=5)
    _randomise_batchnorms(model)
    model.eval()
    x = torch.randn(1, 3, 37, 45)  # odd sizes
    with torch.no_grad():
        expected = model(x)
        before = count_batchnorms(model)
        assert fold_batchnorm(model) == before > 0
        assert count_batchnorms(model) == 0
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_only_a_batchnorm_right_after_a_conv_is_folded():
    seq = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4)
    )
    _randomise_batchnorms(seq)
    seq.eval()
    x = torch.randn(2, 3, 9, 7)
    with torch.no_grad():
        expected = seq(x)
        assert fold_batchnorm(seq) == 1
        assert isinstance(seq[1], nn.Identity) and isinstance(seq[3], nn.BatchNorm2d)
        torch.testing.assert_close(seq(x), expected, rtol=1e-5, atol=1e-5)


def test_folding_a_model_in_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ((40, 48), (40, 48)),  # exactly the input
        ((30, 21), (30, 21)),  # fits: padded, not upscaled
        ((80, 48), (40, 24)),  # too tall: halved
        ((90, 70), (40, 31)),  # 70 · 40/90 = 31.1
        ((1, 1000), (1, 48)),  # a side never shrinks below 1 pixel
    ],
)
def test_fitted_size(image, expected):
    assert fitted_size(*image, *EXPORT_SIZE) == expected


def test_fixed_size_inference_pads_crops_and_scales():
    torch.manual_seed(0)
    model = AutoDeepLab.from_preset("tiny", paper_prefix(4), num_classes=4).eval()
    fixed = FixedSizeInference(model, EXPORT_SIZE)
    H, W = EXPORT_SIZE
    with torch.no_grad():
        exact = torch.randn(1, 3, H, W)
        torch.testing.assert_close(fixed(exact), model(exact), rtol=0, atol=0)
        small = torch.randn(1, 3, 30, 21)
        padded = torch.zeros(1, 3, H, W)
        padded[..., :30, :21] = small
        torch.testing.assert_close(fixed(small), model(padded)[..., :30, :21], rtol=0, atol=0)
        large = torch.randn(1, 3, 90, 70)
        assert fixed(large).shape == (1, 4, 90, 70)


def test_bf16_network_takes_and_returns_float32(run_dir):
    loaded = model_from_checkpoint(run_dir, torch.device("cpu"))
    x, _ = to_tensors(scene(5, *EXPORT_SIZE), np.zeros(EXPORT_SIZE, dtype=np.int64))
    with torch.no_grad():
        expected = loaded.model(x[None])
        got = CastingNetwork(loaded.model, torch.bfloat16)(x[None])
    assert got.dtype == torch.float32
    assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.9


def test_onnx_export_runs_in_onnxruntime_with_metadata(run_dir, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnxscript", reason="the [onnx] extra is not installed")
    out = tmp_path / "model.onnx"
    size = f"{EXPORT_SIZE[0]}x{EXPORT_SIZE[1]}"
    args = ["--checkpoint", str(run_dir), "--size", size, "--out", str(out)]
    assert export_main([*args, "--format", "onnx"]) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["fastadl.input_size"] == size
    assert meta["fastadl.class_names"].split("\n")[1] == "striped disc"
    assert meta["fastadl.mean"] == "0.485,0.456,0.406"
    x, _ = to_tensors(scene(5, *EXPORT_SIZE), np.zeros(EXPORT_SIZE, dtype=np.int64))
    (logits,) = session.run(None, {"image": x[None].numpy()})
    loaded = model_from_checkpoint(run_dir, torch.device("cpu"))
    with torch.no_grad():
        expected = loaded.model(x[None])
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=1e-4, atol=1e-4)


def _export_error(args, capsys) -> str:
    assert export_main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_export_errors_are_one_line(run_dir, tmp_path, capsys):
    out = str(tmp_path / "m.pt2")
    ok = ["--checkpoint", str(run_dir), "--out", out]

    # not a checkpoint at all, and a search run's checkpoint
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert "junk.pt" in _export_error(
        ["--checkpoint", str(junk), "--size", "64x64", "--out", out], capsys
    )
    state = load_checkpoint(run_dir)
    search = {"model": state["model"], "config": state["config"], "architect": {}}
    search_ckpt = save_checkpoint(tmp_path / "search", search, "epoch_1")
    err = _export_error(["--checkpoint", str(search_ckpt), "--size", "64x64", "--out", out], capsys)
    assert "search checkpoint" in err and "fastadl.train" in err

    # a size this network cannot take (its path goes down to /8: sides of 8 or more)
    err = _export_error([*ok, "--size", "4x64"], capsys)
    assert "--size 4x64" in err and "at least" in err

    # output file: wrong suffix, missing folder
    assert ".pt2" in _export_error(
        [*ok[:2], "--size", "64x64", "--out", str(tmp_path / "m.zip")], capsys
    )
    missing_dir = str(tmp_path / "nowhere" / "m.pt2")
    assert "nowhere" in _export_error([*ok[:2], "--size", "64x64", "--out", missing_dir], capsys)

    # no C++ compiler for AOTInductor
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": ("/nonexistent/bin/c++",)}):
        err = _export_error([*ok, "--size", "64x64"], capsys)
    assert "C++ compiler" in err and "CXX" in err

    if not torch.cuda.is_available():
        assert "CUDA" in _export_error([*ok, "--size", "64x64", "--device", "cuda"], capsys)
    assert not (tmp_path / "m.pt2").exists()  # no failure leaves a file behind


def test_malformed_size_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        export_main(["--checkpoint", "x", "--size", "64", "--out", "m.pt2"])
    assert exc.value.code == 2
    assert "--size" in capsys.readouterr().err.splitlines()[-1]
