"""End to end: train a tiny network, export it with AOTInductor, build fastadl-infer with CMake
against the installed torch's libtorch, and check its label maps against ``fastadl.predict``.

The slow parts run once per module: the AOTI compile (~1 min on 2 busy cores) and the CMake
build (~30-60 s), the build started in the background first so the two overlap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from export_helpers import EXPORT_SIZE, scene, tiny_trained_run
from PIL import Image

from fastadl.data.transforms import to_tensors
from fastadl.deploy.inference import model_from_checkpoint
from fastadl.export import main as export_main
from fastadl.predict import main as predict_main

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
SIZE = f"{EXPORT_SIZE[0]}x{EXPORT_SIZE[1]}"


@pytest.fixture(scope="module")
def build_started(tmp_path_factory):
    """``cmake -S . -B build && cmake --build build``, running in the background."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (.ci/run installs it)")
    build = tmp_path_factory.mktemp("build")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = ["cmake", "-S", str(REPO), "-B", str(build), *generator]
    configure.append(f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}")
    log = open(build / "build.log", "w")  # noqa: SIM115 (closed by the waiting fixture)
    script = f"{' '.join(configure)} && cmake --build {build} --parallel 2"
    proc = subprocess.Popen(script, shell=True, stdout=log, stderr=subprocess.STDOUT)
    yield proc, build, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def run_dir(build_started, tmp_path_factory):
    return tiny_trained_run(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def package(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny.pt2"
    assert export_main(["--checkpoint", str(run_dir), "--size", SIZE, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def runner(build_started, package) -> Path:
    proc, build, log = build_started
    rc = proc.wait(timeout=900)
    log.close()
    if rc != 0:
        tail = "\n".join((build / "build.log").read_text().splitlines()[-30:])
        pytest.fail(f"building fastadl-infer failed (exit {rc}):\n{tail}")
    return build / "fastadl-infer"


def infer(runner: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(runner), *args], capture_output=True, text=True, timeout=120)


def test_package_carries_its_metadata_and_matches_eager_logits(package, run_dir):
    compiled = torch._inductor.aoti_load_package(str(package))
    meta = compiled.get_metadata()
    assert meta["fastadl.input_size"] == SIZE and meta["fastadl.dtype"] == "fp32"
    names = meta["fastadl.class_names"].split("\n")
    assert names[0] == "background" and len(names) == 6
    assert len(meta["fastadl.palette"].split(";")) == 6
    assert meta["fastadl.resize"] == "fit-pad"
    loaded = model_from_checkpoint(run_dir, torch.device("cpu"))
    x, _ = to_tensors(scene(5, *EXPORT_SIZE), np.zeros(EXPORT_SIZE, dtype=np.int64))
    # The package reads its input as contiguous NCHW (the strides it was compiled for, unchecked
    # at run time); to_tensors' result has the image's HWC strides.
    x = x[None].contiguous()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), loaded.model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "h", "w", "fixed"),
    [
        ("exact.png", *EXPORT_SIZE, False),  # the package's size: plain predict
        ("tall.png", 90, 70, True),  # larger: scaled down to fit (predict --size)
        ("small.jpg", 30, 21, True),  # smaller, and a JPEG: padded (predict --size)
    ],
)
def test_runner_gives_the_label_map_of_predict(
    runner, package, run_dir, tmp_path, name, h, w, fixed
):
    image = tmp_path / name
    Image.fromarray(scene(11, h, w)).save(image, quality=95)
    mask, over = tmp_path / "mask.png", tmp_path / "overlay.png"
    result = infer(
        runner,
        str(package),
        str(image),
        "--out",
        str(mask),
        "--overlay",
        str(over),
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and f"wrote {mask}" in result.stdout

    args = [str(image), "--checkpoint", str(run_dir), "--out", str(tmp_path / "pred")]
    assert predict_main(args + (["--size", SIZE] if fixed else [])) == 0
    stem = Path(name).stem
    expected = np.asarray(Image.open(tmp_path / "pred" / f"{stem}_mask.png"))
    with Image.open(mask) as im:
        assert im.mode == "P" and im.size == (w, h)
        got = np.asarray(im)
        with Image.open(tmp_path / "pred" / f"{stem}_mask.png") as pred:
            assert im.getpalette()[:18] == pred.getpalette()[:18]  # the 6 class colours
    assert len(np.unique(expected)) >= 3  # a real comparison, not an all-background map
    differ = got != expected
    assert differ.sum() <= 3, f"{differ.sum()} of {differ.size} pixels differ"  # logit ties only
    ov_expected = np.asarray(Image.open(tmp_path / "pred" / f"{stem}_overlay.png"))
    ov_got = np.asarray(Image.open(over))
    np.testing.assert_array_equal(ov_got[~differ], ov_expected[~differ])


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0 and result.stdout == ""
    err = result.stderr
    assert err.startswith("fastadl-infer: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_runner_errors_name_the_file(runner, package, tmp_path):
    image = tmp_path / "ok.png"
    Image.fromarray(scene(1, 20, 20)).save(image)
    out = str(tmp_path / "mask.png")

    one_line_error(infer(runner, str(tmp_path / "none.pt2"), str(image), "--out", out), "none.pt2")
    corrupt = tmp_path / "corrupt.pt2"
    corrupt.write_bytes(os.urandom(4096))
    one_line_error(infer(runner, str(corrupt), str(image), "--out", out), "corrupt.pt2")
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(package.read_bytes()[:100_000])
    one_line_error(infer(runner, str(truncated), str(image), "--out", out), "truncated.pt2")

    one_line_error(
        infer(runner, str(package), str(tmp_path / "gone.png"), "--out", out), "gone.png"
    )
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    one_line_error(infer(runner, str(package), str(text), "--out", out), "notes.png")
    cut = tmp_path / "cut.png"
    cut.write_bytes(image.read_bytes()[:200])
    one_line_error(infer(runner, str(package), str(cut), "--out", out), "cut.png")

    nowhere = str(tmp_path / "nowhere" / "mask.png")
    one_line_error(infer(runner, str(package), str(image), "--out", nowhere), "nowhere")
    one_line_error(infer(runner, str(package), str(image)), "--out")
    one_line_error(
        infer(runner, str(package), str(image), "--out", out, "--threads", "0"), "--threads"
    )
    assert not Path(out).exists()


def test_runner_help_explains_every_flag(runner):
    result = infer(runner, "--help")
    assert result.returncode == 0
    for flag in ("--out", "--overlay", "--threads", "MODEL.pt2", "IMAGE"):
        assert flag in result.stdout
