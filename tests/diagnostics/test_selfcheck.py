"""``python -m fastadl.selfcheck``: runs on this CPU (fused vs reference, triton interpreted with
--quick) and prints its table and PASS; a wrong backend is a FAIL with exit status 1; its
verdict on triton is what `auto` follows; --help imports no Triton and starts no CUDA."""

import re
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
    # the search's own iteration, compared in fp32, bf16 and fp16 (GradScaler) and timed
    found = re.findall(
        r"^search iteration L=1 \S+ \S+ \S+\s+(\w+)\s+(fp32|bf16|fp16)\s+PASS", out, re.M
    )
    assert set(found) == {(b, d) for b in ("fused", "triton") for d in ("fp32", "bf16", "fp16")}
    assert "search iteration fp16" in out and "the search's own" in out
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


@pytest.mark.parametrize("amp", ["off", "fp16"])
def test_selfchecks_iteration_is_the_searchs_first(tmp_path, amp, one_thread):
    """The self-check's iteration (workloads.iteration_workload, with the run's settings and
    batches) and a real search's first iteration (Search.train_step at step 0, α/β on), from the
    same state, leave the same weights, α, β, BatchNorm statistics and optimizer states: the
    self-check checks and times what the search runs (fp16: with its GradScalers)."""
    import dataclasses

    from fastadl.diagnostics.workloads import NetSpec, iteration_workload
    from fastadl.nn import SuperNet
    from fastadl.search.config import resolve
    from fastadl.search.searcher import Search

    cfg = dataclasses.replace(
        resolve("tiny", {}), num_images=8, image_size=24, crop_size=24, val_images=2, layers=2,
        filter_multiplier=2, block_multiplier=2, epochs=1, arch_start_epoch=0, batch_size=2,
        workers=0, threads=0, amp=amp,
    ).validated()  # fmt: skip
    cpu = torch.device("cpu")
    task = Search(cfg, tmp_path, cpu, resume=False)
    net = SuperNet(task.model.num_classes, cfg.layers, cfg.filter_multiplier,
                   cfg.block_multiplier, backend=cfg.backend)  # fmt: skip
    net.load_state_dict(task.model.state_dict())
    batch = next(iter(task.batches(0, 0)))
    assert task.search_arch
    spec = NetSpec(cfg.layers, cfg.filter_multiplier, cfg.block_multiplier,
                   task.model.num_classes, cfg.batch_size, cfg.crop_size, cfg.crop_size)  # fmt: skip
    iteration, batches = iteration_workload(net, spec, cpu, amp, cfg, batch)
    mine = iteration.closure(batches)()
    theirs = task.train_step(batch, 0)
    torch.testing.assert_close(mine["loss"], theirs["loss"], rtol=0, atol=0)
    torch.testing.assert_close(mine["arch_loss"], theirs["arch_loss"], rtol=0, atol=0)
    torch.testing.assert_close(iteration.model.state_dict(), task.model.state_dict(),
                               rtol=0, atol=0)  # fmt: skip
    for name, theirs_opt in task.optimizer_states().items():
        mine_opt = {"w_opt": iteration.w_opt, "w_scaler": iteration.w_scaler,
                    "architect": iteration.architect}[name]  # fmt: skip
        torch.testing.assert_close(mine_opt.state_dict(), theirs_opt.state_dict(),
                                   rtol=0, atol=0)  # fmt: skip
    assert torch.equal(iteration.model.alphas, task.model.alphas)
    assert not torch.equal(task.model.alphas, net.alphas)  # the step did move α


def test_selfcheck_compares_the_arch_step_at_the_weights_before_the_weight_step(one_thread):
    """iteration_tensors' α/β-step gradient and loss are a fresh α/β step's at the starting
    weights (after a weight step the float32 α gradient is ill-conditioned: docs/TESTING.md),
    and its weight changes are those of a weight step alone."""
    from fastadl.diagnostics.checks import iteration_tensors
    from fastadl.diagnostics.workloads import NetSpec, iteration_case

    cpu = torch.device("cpu")
    spec = NetSpec(2, 2, 2, 3, 2, 17, 19)
    like = spec.build("reference")
    names, got = iteration_tensors(*iteration_case(spec, "reference", "off", cpu, like), cpu)
    found = dict(zip(names, got, strict=True))

    arch_only, batches = iteration_case(spec, "reference", "off", cpu, like)
    (_, _), (xb, yb) = batches
    loss = arch_only.architect.step(xb, yb, 1, arch_only.accumulate, arch_only.watch)
    adam = arch_only.architect.optimizer
    beta1 = adam.param_groups[0]["betas"][0]
    torch.testing.assert_close(found["α/β-step loss"], loss, rtol=0, atol=0)
    for p, name in zip(arch_only.arch_params, ("alphas", "betas"), strict=True):
        want = adam.state[p]["exp_avg"] / (1 - beta1)
        torch.testing.assert_close(found[f"α/β-step gradient {name}"], want, rtol=0, atol=0)

    weights_only, batches = iteration_case(spec, "reference", "off", cpu, like)
    before = {n: p.detach().clone() for n, p in weights_only.model.named_parameters()}
    weights_only.run(batches, 0, weights_only.w_lr, arch=False)
    for n, p in weights_only.model.named_parameters():
        if n not in ("alphas", "betas"):
            want = (p.detach() - before[n]) / weights_only.w_lr
            torch.testing.assert_close(found[f"Δ/lr {n}"], want, rtol=0, atol=0)
