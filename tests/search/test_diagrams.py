"""Diagrams of a genotype (issue 27): the cell graph holds every kept edge with its op, the path
diagram the decoded path; python -m fastadl.show writes both for any genotype, no Graphviz."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastadl.search.diagrams import draw_cell, draw_path, save_diagrams
from fastadl.show import main
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype
from fastadl.study.plans import CHECK_CELLS

REPO = Path(__file__).resolve().parents[2]
SEARCHED = Genotype(  # a small searched-like genotype: repeated ops, a skip, a level change
    cell=(
        ("skip_connect", 1),
        ("dil_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 3),
        ("avg_pool_3x3", 0),
    ),  # fmt: skip
    path=(0, 0, 1, 1),
    filter_multiplier=4,
    block_multiplier=3,
    layers=4,
)


def svg_texts(path: Path) -> list[str]:
    """The text elements of an SVG written with its text kept as text."""
    return [t.strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text())]


@pytest.mark.parametrize("genotype", [PAPER_GENOTYPE, SEARCHED, CHECK_CELLS["skip-pool"]])
def test_the_cell_diagram_holds_every_kept_edge_with_its_op(tmp_path, genotype):
    edges = draw_cell(genotype, tmp_path / "cell")
    names = ["H^{l-2}", "H^{l-1}", *(f"block {j + 1}" for j in range(genotype.block_multiplier))]
    expected = [
        (names[src], f"block {k // 2 + 1}", op) for k, (op, src) in enumerate(genotype.cell)
    ]
    assert edges == expected
    texts = svg_texts(tmp_path / "cell.svg")
    for op in {op for op, _ in genotype.cell}:  # each op label once per edge that has it
        assert texts.count(op) == sum(o == op for o, _ in genotype.cell), op
    for b in range(genotype.block_multiplier):
        assert f"block {b + 1}" in texts
    assert (tmp_path / "cell.png").stat().st_size > 5000


@pytest.mark.parametrize("genotype", [PAPER_GENOTYPE, SEARCHED])
def test_the_path_diagram_holds_the_decoded_path(tmp_path, genotype):
    points = draw_path(genotype, tmp_path / "path")
    assert points == [(0, 0), *enumerate(genotype.path, start=1)]
    svg = (tmp_path / "path.svg").read_text()
    assert 'id="decoded-path"' in svg
    texts = svg_texts(tmp_path / "path.svg")
    assert f"network path: levels {' '.join(map(str, genotype.path))}" in texts
    rates = [t for t in texts if re.fullmatch(r"/\d+", t)]
    # the 4 y-axis ticks, then one rate per path node (stem included)
    assert rates[4:] == [f"/{4 * 2**level}" for level in (0, *genotype.path)]
    assert (tmp_path / "path.png").stat().st_size > 5000


def test_diagrams_are_the_same_bytes_every_time(tmp_path):
    first = save_diagrams(SEARCHED, tmp_path / "a")
    second = save_diagrams(SEARCHED, tmp_path / "b")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_show_draws_the_paper_genotype_and_a_run_directory(tmp_path, capsys):
    assert main(["paper", "--out", str(tmp_path / "paper")]) == 0
    out = capsys.readouterr().out
    assert "block 1: dil_conv_5x5 ← H^{l-2}, sep_conv_3x3 ← H^{l-1}" in out
    assert "path: 0 0 0 1 2 1 2 2 3 3 2 1" in out
    for name in (
        "genotype_cell.png",
        "genotype_cell.svg",
        "genotype_path.png",
        "genotype_path.svg",
    ):
        assert (tmp_path / "paper" / name).stat().st_size > 1000, name
    run = tmp_path / "run"
    run.mkdir()
    SEARCHED.save(run / "genotype.json")
    assert main([str(run), "--out", str(tmp_path / "searched")]) == 0
    texts = svg_texts(tmp_path / "searched" / "genotype_cell.svg")
    assert texts.count("skip_connect") == 2 and "max_pool_3x3" in texts


def test_show_names_a_bad_genotype_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.json" in err and len(err.splitlines()) == 1
    assert main(["paper:2", "--out", str(tmp_path)]) == 2


def test_show_needs_no_graphviz(tmp_path):
    """A PATH holding only this Python: no ``dot`` binary can be found, the files still come."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bin_dir), "PYTHONPATH": str(REPO)}
    cmd = ["python", "-m", "fastadl.show", "paper:4", "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "genotype_cell.png", "genotype_cell.svg", "genotype_path.png", "genotype_path.svg",
    ]  # fmt: skip
