"""Stacked cell weights as leaves over the search optimizer's flat buffer (no copies)."""

from __future__ import annotations

import copy

import torch

from fastadl import SuperNet
from fastadl.ops.cell.plan import cached_cell_plan
from fastadl.ops.cell.weights import bound_stacked_weights, packing_order
from fastadl.runtime.steps import frozen
from fastadl.search.flat_sgd import FlatSGD, search_weight_optimizer

HYPER = dict(lr=0.05, momentum=0.9, weight_decay=3e-4)


def net64() -> SuperNet:
    torch.manual_seed(0)
    return SuperNet(4, 2, 2, 3).double()


def loss_of(net: SuperNet) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 21, 19, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (2, 21, 19), generator=gen)
    return torch.nn.functional.cross_entropy(net(x), y)


def cell_plans(net: SuperNet):
    return [cached_cell_plan(node.cell) for node in net.nodes.values()]


def test_every_cell_is_bound_and_shares_memory_with_its_edges():
    net = net64()
    search_weight_optimizer(net, False, **HYPER)
    for plan in cell_plans(net):
        leaves = bound_stacked_weights(plan)
        assert leaves is not None and len(leaves) == plan.kinds
        first = plan.conv_modules[0].weight
        assert leaves[0].data_ptr() == first.data_ptr()


def test_bound_gradients_equal_the_concatenated_path():
    bound, plain = net64(), net64()
    opt = search_weight_optimizer(bound, False, **HYPER)
    ref_opt = FlatSGD(plain.weight_parameters(), **HYPER)  # packed, not bound: concatenation
    for net, o in ((bound, opt), (plain, ref_opt)):
        o.zero_grad()
        with frozen(net.arch_parameters()):
            loss_of(net).backward()
        o.step()
    for (name, a), b in zip(bound.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=name)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14, msg=name)


def test_frozen_weights_get_no_gradient_through_the_leaves():
    net = net64()
    opt = search_weight_optimizer(net, False, **HYPER)
    opt.zero_grad()
    with frozen(net.weight_parameters()):
        grads = torch.autograd.grad(loss_of(net), net.arch_parameters())
    assert all(g.abs().sum() > 0 for g in grads)
    assert opt.flat.grad.abs().sum() == 0


def test_a_replaced_parameter_ends_the_binding_not_the_gradients():
    net = net64()
    search_weight_optimizer(net, False, **HYPER)
    moved = copy.deepcopy(net)  # new tensors: the bindings point at the old buffer
    for plan in cell_plans(moved):
        assert bound_stacked_weights(plan) is None
    loss_of(moved).backward()
    assert all(p.grad is not None for p in moved.weight_parameters())


def test_packing_order_keeps_every_parameter_once():
    net = net64()
    weights = net.weight_parameters()
    order = packing_order(net, weights)
    assert sorted(map(id, order)) == sorted(map(id, weights))
    assert list(map(id, order)) != list(map(id, weights))  # the cells' kinds moved together


def test_plain_sgd_state_loads_into_the_packed_order():
    ref, flat = net64(), net64()
    ref_opt = torch.optim.SGD(ref.weight_parameters(), **HYPER)
    for _ in range(2):
        ref_opt.zero_grad()
        loss_of(ref).backward()
        ref_opt.step()
    flat.load_state_dict(ref.state_dict())
    opt = search_weight_optimizer(flat, False, **HYPER)
    opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
    for net, o in ((ref, ref_opt), (flat, opt)):
        o.zero_grad()
        loss_of(net).backward()
        o.step()
    for a, b in zip(flat.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
