"""``python -m fastadl.cost --genotype G --size HxW`` (fastadl/budget/cli.py): what it prints,
its errors."""

import random

import pytest

from fastadl.cost import main
from fastadl.space.random_genotype import random_genotype


@pytest.fixture
def genotype_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTADL_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "genotype.json"
    path.write_text(random_genotype(random.Random(3), 2, 3, 8).to_json())
    return path


def test_prints_prediction_counts_and_measurement(genotype_file, capsys):
    argv = ["--genotype", str(genotype_file), "--size", "33x45", "--model", "tiny"]
    assert main([*argv, "--measure", "--repeats", "2", "--clock", "cpu"]) == 0
    out = capsys.readouterr().out
    for text in ("predicted latency", "GMACs", "Mparams", "measured latency", "prediction error"):
        assert text in out
    assert "input 33x45" in out and "B=2, L=3" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--genotype", "missing.json", "--size", "64x64"], "missing.json"),
        (["--size", "64by64"], "HxW"),
        (["--size", "0x64"], "HxW"),
        (["--size", "64x64", "--threads", "0"], "--threads"),
    ],
)
def test_bad_genotype_or_size_is_named(genotype_file, args, message, capsys):
    if "--genotype" not in args:
        args = ["--genotype", str(genotype_file), *args]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
