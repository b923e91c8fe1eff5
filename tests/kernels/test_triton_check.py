"""The `auto` policy (fastadl/ops/triton_check.py): triton only on a CUDA device whose cached
kernel smoke check passed, fused otherwise; the check itself passes on this device and fails,
with a one-line reason, on a wrong or crashing kernel."""

import pytest
import torch

from fastadl.ops import triton_backend, triton_check
from fastadl.ops.mixed import auto_backend, resolve_backend

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)


@pytest.fixture
def fresh_verdicts(monkeypatch):
    monkeypatch.setattr(triton_check, "_VERDICTS", {})


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
