"""``--compile`` (fastadl/nn/search/compile.py): the compiled supernet is the eager one, in both steps.

A two-layer trellis (same-level, downsampling and upsampling transitions, H^{l-2} reduced by
stride 1, 2 and 4; the second layer's transitions are the ones the α/β step compiles, since
the first layer's read the frozen stem; sized for CI's compile time) in float64, so that
compiled and eager agree to float64 rounding, whatever order inductor sums in. The weight step
(α/β frozen) and the α/β step (weights frozen) each compile once; running them again, in
alternation, recompiles nothing; evaluation runs eagerly (compiles nothing) and equals eager.
"""

from __future__ import annotations

import copy

import pytest
import torch

from fastadl import SuperNet
from fastadl.nn.search.compile import compile_regions, compile_stats
from fastadl.runtime.rundir.metrics_log import read
from fastadl.runtime.steps import frozen, segmentation_loss
from fastadl.search.config import resolve
from fastadl.search.searcher import run_search


def _step(net: SuperNet, x, y, arch: bool) -> list[torch.Tensor]:
    """One forward + backward of the weight step (arch=False) or the α/β step; the gradients."""
    train = net.arch_parameters() if arch else net.weight_parameters()
    other = net.weight_parameters() if arch else net.arch_parameters()
    with frozen(other):
        loss = segmentation_loss(net(x), y)
        grads = torch.autograd.grad(loss, train)
    return [loss.detach(), *grads]


@pytest.fixture(scope="module")
def nets(one_thread):
    torch.manual_seed(0)
    eager = SuperNet(3, layers=2, filter_multiplier=2, block_multiplier=2).double()
    with torch.no_grad():  # far from uniform, so every path and op matters
        eager.alphas.normal_(0, 1)
        eager.betas.normal_(0, 1)
    compiled = compile_regions(copy.deepcopy(eager))
    return eager, compiled


def test_compiled_steps_match_eager_and_do_not_recompile(nets):
    eager, compiled = nets
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 17, 19, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 17, 19), generator=gen)
    torch._dynamo.reset()
    graphs = [compile_stats()]
    for arch in (False, True):
        # BatchNorm running statistics move in both copies alike (training mode)
        torch.testing.assert_close(_step(compiled, x, y, arch), _step(eager, x, y, arch))
        graphs.append(compile_stats())
    # each step compiled graphs of its own (the regions were not skipped), and timed them
    (g0, s0), (g_weight, s_weight), (g_arch, s_arch) = graphs
    assert g0 < g_weight < g_arch and s0 < s_weight < s_arch
    for arch in (False, True, False):
        torch.testing.assert_close(_step(compiled, x, y, arch), _step(eager, x, y, arch))
    assert compile_stats()[0] == g_arch  # no recompilation between the steps
    for (name, b), a in zip(compiled.named_buffers(), eager.buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=name)


def test_evaluation_runs_eagerly_and_matches(nets):
    """Validation (eval mode, no_grad) and a training-mode no_grad forward compile nothing."""
    eager, compiled = nets
    x = torch.randn(2, 3, 17, 19, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    graphs = compile_stats()[0]
    with torch.no_grad():
        for training in (False, True):
            eager.train(training)
            compiled.train(training)
            torch.testing.assert_close(compiled(x), eager(x))
    assert compile_stats()[0] == graphs


def test_compile_regions_needs_a_supernet():
    with pytest.raises(TypeError, match="SuperNet"):
        compile_regions(torch.nn.Linear(2, 2))


def test_search_reports_compile_time(tmp_path, one_thread, capsys):
    """``--compile`` in a real search: a "compile: N graphs, X s" line and the metrics fields
    after the steps that compiled (the first weight step, the first α/β step), none after."""
    cfg = resolve(
        "tiny",
        {
            "num_images": 16,
            "image_size": 32,
            "crop_size": 32,
            "batch_size": 4,
            "val_images": 2,
            "layers": 2,
            "filter_multiplier": 2,
            "block_multiplier": 2,
            "epochs": 2,
            "arch_start_epoch": 1,
            "workers": 0,
            "threads": 0,
            "device": "cpu",
            "compile": True,
        },
    )
    run_search(cfg, tmp_path, progress=False)
    steps = [r for r in read(tmp_path / "metrics.jsonl") if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]  # 2 steps an epoch, α/β from step 3
    reported = [(r["step"], r["compile_graphs"], r["compile_s"]) for r in steps if "compile_s" in r]
    assert [step for step, _, _ in reported] == [1, 3]
    (_, g_weight, s_weight), (_, g_arch, s_arch) = reported
    assert 0 < g_weight < g_arch and 0 < s_weight < s_arch
    out = capsys.readouterr().out
    assert f"compile: {g_weight} graphs, {s_weight:.1f} s (by step 1)" in out
