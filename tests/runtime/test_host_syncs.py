"""Host synchronisations inside the search's weight step and α/β step (issue 26): none.

On CUDA an operation that reads a device value on the host (``item``, ``bool(t)``, ``nonzero``,
a boolean-mask index) makes the CPU wait for the GPU, so the CPU cannot run ahead queueing
kernels. A TorchDispatchMode records every such operation of one weight step and one α/β step
of a small supernet, on the route CUDA runs (every C++ kernel off), with the fastadl line that
asked for it (the innermost fastadl function, and the torch function below it when torch
asked). Copies to the CPU are not seen here (on a CPU tensor they are no copies at all).

The steps keep their losses and non-finite checks on the device (runtime/steps.py's
FiniteWatch; the loop reads them every few steps), their learning rates are tensors and Adam is
the fused one (no step counter read on the host): the test finds none, and a second test shows
that it would find a deliberate ``.item()``. The β mask is made once per device (no copy per
forward).
"""

from __future__ import annotations

import collections
import contextlib
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastadl import SuperNet
from fastadl.runtime import steps
from fastadl.runtime.precision import Precision
from fastadl.runtime.steps import FiniteWatch, frozen, stepped_parameters, weight_step
from fastadl.search.architect import Architect
from fastadl.search.flat_sgd import search_weight_optimizer
from fastadl.space.trellis import normalize_betas

pytestmark = pytest.mark.usefixtures("one_thread")

aten = torch.ops.aten
SYNCING = {  # operator packets whose result depends on device values read on the host
    aten._local_scalar_dense, aten.is_nonzero, aten.item, aten.nonzero, aten.masked_select,
    aten.unique_dim, aten._unique2,
}  # fmt: skip

PLUMBING = ("/torch/_ops.py", "/torch/utils/_python_dispatch.py", "/torch/_tensor.py",
            "/torch/overrides.py", "/torch/_dynamo/", "/torch/_compile.py")  # fmt: skip


def _caller() -> str:
    """Where the op was asked for: the innermost fastadl frame ("path::function"), and the
    innermost torch frame below it (" via torch/...::function") when torch code asked."""
    via = ""
    for frame in reversed(traceback.extract_stack()):
        path = frame.filename.replace("\\", "/")
        if "/fastadl/" in path:
            return f"fastadl/{path.rsplit('/fastadl/', 1)[1]}::{frame.name}{via}"
        if "/torch/" in path and not via and not any(p in path for p in PLUMBING):
            via = f" via torch/{path.rsplit('/torch/', 1)[1]}::{frame.name}"
    return "<outside fastadl>" + via


class SyncRecorder(TorchDispatchMode):
    """Counts the host-syncing operations run under it, per calling (file, function)."""

    def __init__(self):
        super().__init__()
        self.found: collections.Counter = collections.Counter()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        bool_index = func is aten.index.Tensor and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        )
        if func.overloadpacket in SYNCING or bool_index:
            self.found[_caller()] += 1
        self.ops.append(str(func.overloadpacket))
        return func(*args, **kwargs)


def one_iteration(rec: SyncRecorder | None) -> FiniteWatch:
    """Two search iterations (weight step, α/β step) of a small paper-shaped supernet, the
    second recorded by ``rec``; returns the steps' non-finite watch (read after recording)."""
    torch.manual_seed(0)
    net = SuperNet(5, 2, 2, 3, backend="auto")
    precision = Precision("off", "cpu")
    scaler = precision.make_scaler()
    w_opt = search_weight_optimizer(net, False, lr=0.025, momentum=0.9, weight_decay=3e-4)
    arch = Architect(net, net.arch_parameters(), 3e-3, (0.5, 0.999), 1e-3, precision)
    gen = torch.Generator().manual_seed(1)
    xa, xb = (torch.randn(2, 3, 17, 17, generator=gen) for _ in range(2))
    ya, yb = (torch.randint(0, 5, (2, 17, 17), generator=gen) for _ in range(2))
    params = stepped_parameters(w_opt)
    watch = FiniteWatch()
    for step in (1, 2):  # the first builds what is cached (plans, the β mask); record the second
        with rec if (rec is not None and step == 2) else contextlib.nullcontext():
            steps.set_lr(w_opt, 0.02 / step)  # the schedule's change, as the search makes it
            with frozen(net.arch_parameters()):
                weight_step(net, xa, ya, w_opt, scaler, precision, params, step, 1, 5.0, watch)
            arch.step(xb, yb, step, 1, watch)
    return watch


@pytest.mark.parametrize("cpu_kernels", ["no C++ kernels"], indirect=True)
def test_no_host_syncs_inside_the_steps(cpu_kernels):
    rec = SyncRecorder()
    watch = one_iteration(rec)
    report = "; ".join(f"{where} ×{n}" for where, n in sorted(rec.found.items()))
    print(f"host syncs in one weight step + one α/β step: {sum(rec.found.values())}: {report}")
    assert not rec.found, report
    assert len(rec.ops) > 1000  # the recorder saw the steps' operations
    watch.check()  # the steps were finite (read once, outside the recorded steps)


def test_the_recorder_finds_a_deliberate_item(monkeypatch):
    real = steps.segmentation_loss

    def reading(logits, masks):
        loss = real(logits, masks)
        loss.item()  # the kind of read the steps must not make
        return loss

    monkeypatch.setattr(steps, "segmentation_loss", reading)
    rec = SyncRecorder()
    one_iteration(rec)
    # the weight step's loss only (architect.py holds its own reference to the loss function)
    assert sum(rec.found.values()) == 1, rec.found
    assert any("weight_step" in where or "reading" in where for where in rec.found), rec.found


def test_the_beta_mask_is_made_once_per_device():
    betas = torch.randn(4, 4, 3)
    want = normalize_betas(betas)
    rec = SyncRecorder()
    with rec:
        got = normalize_betas(betas)
    torch.testing.assert_close(got, want)
    # no mask built (zeros + fills) nor copied per call: only the masked softmax itself
    assert not {"aten.zeros", "aten.fill_", "aten._to_copy", "aten.lift_fresh"} & set(rec.ops)
