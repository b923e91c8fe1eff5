"""``python -m fastadl.selfcheck``: runs on this CPU (fused vs reference, triton interpreted with
--quick) and prints its table and PASS; a wrong backend is a FAIL with exit status 1; its
verdict on triton is what `auto` follows; --help imports no Triton and starts no CUDA."""

import subprocess
import sys

import pytest
import torch

from fastadl import selfcheck
from fastadl.diagnostics import report
from fastadl.diagnostics.checks import Row


def test_quick_selfcheck_passes_and_prints_its_tables(capsys, one_thread):
    assert selfcheck.main(["--quick", "--reps", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for backend in ("fused", "triton"):  # triton under the interpreter (tests/conftest.py)
        assert any(line.split()[2:4] == [backend, "bf16"] for line in out.splitlines()), backend
    assert "supernet L=1" in out and "(eval)" in out
    assert "search iteration" in out and "not timed under the interpreter" in out
    assert "auto on cpu: search cells: the cell-level path on C++ kernels; a lone MixedOp" in out
    assert out.rstrip().splitlines()[-1].startswith("PASS:")
    assert "FAIL" not in out


def test_a_wrong_backend_fails_the_selfcheck(monkeypatch, capsys, one_thread):
    import fastadl.ops.edge.fused as fused

    real = fused.fused_mixed_op
    monkeypatch.setattr(fused, "fused_mixed_op", lambda *a, **k: 1.001 * real(*a, **k))
    monkeypatch.setattr(report, "triton_status", lambda device, quick: (False, False, "test"))
    assert selfcheck.main(["--quick", "--no-timing", "--no-progress"]) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if " FAIL " in line]
    assert fails and all(line.split()[-6:][0] for line in fails)
    assert any("edge odd 2×3×5×6" in line and "fused" in line for line in fails)
    assert out.rstrip().splitlines()[-1].startswith("FAIL:")


def test_triton_failures_become_auto_s_verdict():
    ok = Row("edge s4", "fused", "fp32", "FAIL", "grad x")  # another backend's failure
    assert report.triton_verdict_from([ok]).ok
    bad = Row("edge s4 2×8×81×81", "triton", "bf16", "FAIL", "all 39 tensors (rms)", 3.0, "rel 0.8")
    verdict = report.triton_verdict_from([ok, bad])
    assert not verdict.ok and verdict.reason.startswith("selfcheck: edge s4 2×8×81×81 bf16")


def test_bad_device_is_a_one_line_error(capsys):
    assert selfcheck.main(["--device", "cuda:99"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device cuda:99") and "\n" not in err
    assert selfcheck.main(["--reps", "0"]) == 2


@pytest.mark.parametrize("module", ["fastadl.selfcheck", "fastadl.cost"])
def test_help_imports_no_triton_and_starts_no_cuda(module):
    code = (
        f"import sys, runpy; sys.argv = ['{module}', '--help']\n"
        "try:\n"
        f"    runpy.run_module('{module}', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "import torch\n"
        "assert 'triton' not in sys.modules, 'triton imported'\n"
        "assert not torch.cuda.is_initialized(), 'CUDA initialised'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--device" in run.stdout or "--preset" in run.stdout


def test_plans_cover_the_papers_edge_shapes():
    plan = selfcheck.make_plan(quick=False, cuda=torch.cuda.is_available(), reps=None)
    assert list(plan.edges.values()) == list(selfcheck.PAPER_EDGES.values())
    assert plan.timed_edge in plan.edges
