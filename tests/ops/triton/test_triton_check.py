"""The `auto` policy (fastadl/ops/triton/check.py): triton only on a CUDA device whose cached
kernel smoke check passed, fused otherwise; the check itself passes on this device and fails,
with a one-line reason, on a wrong or crashing kernel."""

import pytest
import torch

from fastadl.ops.dispatch import auto_backend, resolve_backend
from fastadl.ops.triton import backend as triton_backend
from fastadl.ops.triton import check as triton_check

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)


@pytest.fixture
def fresh_verdicts(monkeypatch, tmp_path):
    """No verdicts in memory, none stored (and none written outside tmp_path)."""
    monkeypatch.setattr(triton_check, "_VERDICTS", {})
    monkeypatch.setenv("FASTADL_CACHE_DIR", str(tmp_path))


@pytest.fixture
def fake_checks(monkeypatch, fresh_verdicts):
    """smoke_check replaced: device index → verdict, and the calls it got."""
    calls = []
    verdicts = {0: triton_check.Verdict(True), 1: triton_check.Verdict(False, "boom on cuda:1")}

    def check(device):
        calls.append(device)
        return verdicts[device.index]

    monkeypatch.setattr(triton_check, "smoke_check", check)
    return calls


def test_auto_is_fused_on_cpu(fake_checks):
    assert resolve_backend("auto", torch.zeros(1)) == "fused"
    assert not fake_checks  # no check is run for a CPU tensor


def test_auto_follows_the_cached_verdict_per_cuda_device(fake_checks):
    with pytest.warns(RuntimeWarning, match="boom on cuda:1.*fastadl.selfcheck"):
        assert auto_backend(torch.device("cuda", 1)) == "fused"
    assert auto_backend(torch.device("cuda", 0)) == "triton"
    for _ in range(3):  # cached: no second check, no second warning
        assert auto_backend(torch.device("cuda", 1)) == "fused"
        assert auto_backend(torch.device("cuda", 0)) == "triton"
    assert fake_checks == [torch.device("cuda", 1), torch.device("cuda", 0)]


def test_a_recorded_verdict_wins(fake_checks):
    triton_check.record_verdict(torch.device("cuda", 0), triton_check.Verdict(False, "selfcheck"))
    assert auto_backend(torch.device("cuda", 0)) == "fused" and not fake_checks


def test_no_check_runs_while_compiling(fake_checks, monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert auto_backend(torch.device("cuda", 0)) == "fused"
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    assert auto_backend(torch.device("cuda", 0)) == "triton"  # not cached while tracing


def test_smoke_check_passes_on_this_device():
    verdict = triton_check.smoke_check(torch.device(DEVICE))
    assert verdict.ok, verdict.reason


def test_smoke_check_fails_on_a_wrong_kernel(monkeypatch):
    real = triton_backend.triton_mixed_op
    monkeypatch.setattr(triton_backend, "triton_mixed_op", lambda *a: 1.001 * real(*a))
    verdict = triton_check.smoke_check(torch.device(DEVICE))
    assert not verdict.ok and verdict.reason.startswith("edge: ") and " off (" in verdict.reason


def test_smoke_check_turns_a_crash_into_a_verdict(monkeypatch):
    def crash(*args):
        raise RuntimeError("PTX assembly failed\nlong compiler log ...")

    monkeypatch.setattr(triton_backend, "triton_mixed_op", crash)
    verdict = triton_check.smoke_check(torch.device(DEVICE))
    assert verdict == triton_check.Verdict(False, "RuntimeError: PTX assembly failed")


@pytest.fixture
def stored_verdicts(monkeypatch, fake_checks):
    """Verdicts persist (in tmp_path) for a fake GPU model."""
    monkeypatch.setattr(triton_check, "_identity", lambda device: f"Fake GPU {device.index}")
    return fake_checks


def test_a_verdict_persists_for_later_processes(stored_verdicts, monkeypatch):
    assert auto_backend(torch.device("cuda", 0)) == "triton"  # checked, and stored
    # the self-check finds a failure at the paper's shapes and records it
    failed = triton_check.Verdict(False, "selfcheck: edge s4 bf16 off")
    triton_check.record_verdict(torch.device("cuda", 0), failed, "selfcheck")
    monkeypatch.setattr(triton_check, "_VERDICTS", {})  # a new process
    with pytest.warns(RuntimeWarning, match="selfcheck: edge s4 bf16 off"):
        assert auto_backend(torch.device("cuda", 0)) == "fused"
    assert stored_verdicts == [torch.device("cuda", 0)]  # the later process ran no check
    assert "selfcheck" in triton_check.verdicts_path().read_text()


def test_an_unwritable_cache_costs_only_a_check(stored_verdicts, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("FASTADL_CACHE_DIR", str(blocker / "sub"))  # cannot be created
    assert auto_backend(torch.device("cuda", 0)) == "triton"
    monkeypatch.setattr(triton_check, "_VERDICTS", {})
    assert auto_backend(torch.device("cuda", 0)) == "triton"
    assert len(stored_verdicts) == 2
