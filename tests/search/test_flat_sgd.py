"""FlatSGD: the search's weight optimizer over one flat buffer equals torch's SGD step for step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fastadl import SuperNet
from fastadl.runtime.precision import Precision
from fastadl.runtime.steps import frozen, set_lr, sgd, stepped_parameters, weight_step
from fastadl.search.flat_sgd import FlatSGD

HYPER = dict(lr=0.05, momentum=0.9, weight_decay=3e-4)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 4, 1)
    )  # fmt: skip


def run_steps(net, opt, steps: int, clip: float = 0.5, lrs=None) -> list[torch.Tensor]:
    """``steps`` weight steps; lrs: the learning rate of each (set with steps.set_lr)."""
    precision = Precision("off", "cpu")
    scaler = precision.make_scaler()
    gen = torch.Generator().manual_seed(1)
    losses = []
    for step in range(steps):
        if lrs is not None:
            set_lr(opt, lrs[step])
        x = torch.randn(2, 3, 7, 9, generator=gen)
        y = torch.randint(0, 4, (2, 7, 9), generator=gen)
        losses.append(
            weight_step(net, x, y, opt, scaler, precision, stepped_parameters(opt), step, 1, clip)
        )
    return losses


def test_flat_sgd_matches_torch_sgd_with_clipping():
    ref = small_net()
    flat = copy.deepcopy(ref)
    ref_opt = torch.optim.SGD(ref.parameters(), **HYPER)
    flat_opt = FlatSGD(list(flat.parameters()), **HYPER)
    torch.testing.assert_close(run_steps(flat, flat_opt, 6), run_steps(ref, ref_opt, 6))
    for a, b in zip(flat.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # the parameters stay the modules' own, viewing the flat buffer
    assert all(p.data_ptr() >= flat_opt.flat.data_ptr() for p in flat.parameters())
    assert flat_opt.flat.shape == (sum(p.numel() for p in ref.parameters()),)


def test_a_tensor_learning_rate_steps_the_same_numbers_as_a_float_one():
    """FlatSGD's learning rate is a device tensor (a schedule's change is a fill, not a copy
    from the host); over a changing schedule the weights are those of torch's SGD with floats."""
    ref = small_net()
    flat = copy.deepcopy(ref)
    ref_opt = torch.optim.SGD(ref.parameters(), **HYPER)
    flat_opt = FlatSGD(list(flat.parameters()), **HYPER)
    lr = flat_opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.shape == () and lr.dtype == torch.float32
    lrs = [0.05, 0.0431, 0.0287, 0.0113, 0.0021]
    run_steps(ref, ref_opt, 5, lrs=lrs)
    run_steps(flat, flat_opt, 5, lrs=lrs)
    assert flat_opt.param_groups[0]["lr"] is lr  # filled in place
    for a, b in zip(flat.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_lost_gradient_is_an_error_not_a_silent_skip():
    net = small_net()
    opt = FlatSGD(list(net.parameters()), **HYPER)
    run_steps(net, opt, 1)
    net.zero_grad(set_to_none=True)  # cuts the views: the next step would lose the gradients
    with pytest.raises(ValueError, match="outside the flat buffer"):
        run_steps(net, opt, 1)


def test_resumes_from_a_plain_sgd_state():
    ref = small_net()
    ref_opt = torch.optim.SGD(ref.parameters(), **HYPER)
    run_steps(ref, ref_opt, 3)
    flat = copy.deepcopy(ref)
    flat_opt = FlatSGD(list(flat.parameters()), **HYPER)
    flat_opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
    assert isinstance(flat_opt.param_groups[0]["lr"], torch.Tensor)  # a plain float made ours
    torch.testing.assert_close(run_steps(flat, flat_opt, 3), run_steps(ref, ref_opt, 3))
    for a, b in zip(flat.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("make", [FlatSGD, sgd], ids=["FlatSGD", "steps.sgd"])
def test_a_first_step_the_scaler_skips_leaves_no_garbage_momentum(make):
    """fp16: the GradScaler skips a step whose gradients hold an inf (usual at its first scale).
    The fused SGD under FlatSGD and steps.sgd then steps as torch's plain SGD does (torch's fused
    SGD kept an uninitialised momentum buffer and added it to the weights at the next step)."""
    ref, net = small_net(), small_net()
    ref_opt, opt = torch.optim.SGD(ref.parameters(), **HYPER), make(list(net.parameters()), **HYPER)
    if not opt.defaults.get("fused"):
        pytest.skip("this torch has no fused SGD for CPU tensors: nothing to check")
    for model, optimizer in ((ref, ref_opt), (net, opt)):
        scaler = torch.amp.GradScaler("cpu")
        for step in range(2):
            scale = float(scaler.scale(torch.ones(())))
            for i, p in enumerate(model.parameters()):
                g = torch.full_like(p, 0.01 * (i + 1) * scale)
                if step == 0 and i == 0:
                    g.view(-1)[0] = float("inf")  # the first step is skipped
                if p.grad is None:
                    p.grad = g
                else:
                    p.grad.copy_(g)  # FlatSGD: into the flat buffer's views
            if step == 0:  # memory torch's empty_like may hand out again: NaN, not 0
                junk = [torch.full_like(p, float("nan")) for p in stepped_parameters(optimizer)]
                del junk
            scaler.step(optimizer)
            scaler.update()
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)


def test_every_supernet_weight_gets_a_gradient():
    """FlatSGD decays every weight every step; torch's SGD skips weights without a gradient.
    They agree because a supernet weight step reaches every weight."""
    torch.manual_seed(0)
    net = SuperNet(5, 3, 2, 3)
    weights = net.weight_parameters()
    with frozen(net.arch_parameters()):
        out = net(torch.randn(2, 3, 17, 19))
        nn.functional.cross_entropy(out, torch.randint(0, 5, (2, 17, 19))).backward()
    missing = [n for n, p in net.named_parameters() if p in set(weights) and p.grad is None]
    assert not missing
