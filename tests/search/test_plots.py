"""Every plot writes a readable PNG of sensible size, without pyplot's global state."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image

from fastadl.runtime.rundir import plots as run_plots
from fastadl.search import plots
from fastadl.space.genotype import PAPER_GENOTYPE, viterbi
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import normalize_betas


def _check_png(path, min_side: int = 200) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
        extrema = im.convert("L").getextrema()
    assert min(w, h) >= min_side and max(w, h) <= 4000
    assert extrema[0] < extrema[1]  # something was drawn, not a blank canvas
    return w, h


@pytest.mark.parametrize("layers", [12, 3])  # the paper's L, and a tiny search
def test_plot_betas_with_decoded_path(tmp_path, layers):
    nb = normalize_betas(torch.randn(layers, 4, 3, generator=torch.Generator().manual_seed(0)))
    out = plots.plot_betas(nb, viterbi(nb), tmp_path / "plots" / "betas.png")
    _check_png(out)


def test_plot_betas_paper_path_and_no_path(tmp_path):
    nb = normalize_betas(torch.zeros(12, 4, 3))
    _check_png(plots.plot_betas(nb, PAPER_GENOTYPE.path, tmp_path / "paper.png"))
    _check_png(plots.plot_betas(nb, None, tmp_path / "none.png"))
    with pytest.raises(ValueError, match="path has 3 levels"):
        plots.plot_betas(nb, (0, 1, 1), tmp_path / "bad.png")


def test_edge_labels_follow_darts_order():
    labels = plots.edge_labels(20)
    assert labels[:5] == ["b1←in0", "b1←in1", "b2←in0", "b2←in1", "b2←b1"]
    assert labels[-1] == "b5←b4"
    with pytest.raises(ValueError, match="7 rows"):
        plots.edge_labels(7)


def test_plot_alphas(tmp_path):
    alphas = torch.randn(20, len(PRIMITIVES), requires_grad=True)  # as held by the SuperNet
    _check_png(plots.plot_alphas(alphas, PRIMITIVES, tmp_path / "alphas.png"))
    with pytest.raises(ValueError, match=r"\(E, 8\)"):
        plots.plot_alphas(torch.randn(20, 5), PRIMITIVES, tmp_path / "bad.png")


def test_plot_curves_tolerates_missing_keys(tmp_path):
    records = [{"kind": "header", "preset": "tiny"}]
    records += [
        {"kind": "train", "epoch": s // 5, "step": s, "loss": 2.0 / (1 + s)} for s in range(20)
    ]
    records += [{"kind": "arch", "step": s, "loss": 1.5 / (1 + s)} for s in range(10, 20)]
    records += [{"kind": "val", "epoch": e, "val_miou": 0.1 * e} for e in range(4)]
    records += [{"kind": "val", "epoch": 4, "val_miou": None}]  # NaN written as null
    _check_png(run_plots.plot_curves(records, tmp_path / "curves.png"))
    _check_png(run_plots.plot_curves([], tmp_path / "empty.png"))


def test_plot_confusion_row_normalised(tmp_path):
    m = torch.randint(0, 50, (5, 5)) + 200 * torch.eye(5, dtype=torch.long)
    m[4] = 0  # a class never present in the targets must not divide by zero
    names = ["road", "sidewalk", "building", "wall", "fence"]
    _check_png(run_plots.plot_confusion(m, names, tmp_path / "confusion.png"))
    with pytest.raises(ValueError, match="2 class names"):
        run_plots.plot_confusion(m, names[:2], tmp_path / "bad.png")


def test_importing_plots_does_not_import_matplotlib_or_select_a_backend():
    code = (
        "import sys, fastadl.search.plots, fastadl.runtime.metrics, fastadl.runtime.rundir.checkpoint;"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
