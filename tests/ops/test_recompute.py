"""Recompute mode: an edge keeps (almost) only its input for backward, and still gives the
reference's output and gradients.

Saved activations are counted with torch.autograd.graph.saved_tensors_hooks: every tensor
autograd stores for backward, parameters excluded, each storage counted once.
"""

from __future__ import annotations

import copy

import pytest
import torch

from fastadl import PRIMITIVES, MixedOp, SuperNet, convert_mixed_ops


def saved_activation_bytes(model: torch.nn.Module, run) -> int:
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values())


@pytest.mark.parametrize("shape", [(2, 8, 21, 21), (2, 5, 13, 9)])
def test_recompute_keeps_at_most_a_fifth_of_the_reference(shape):
    torch.manual_seed(0)
    op = MixedOp(shape[1], backend="reference")
    x = torch.randn(shape, requires_grad=True)
    alpha = torch.randn(len(PRIMITIVES), requires_grad=True)
    per_backend = {}
    for backend, recompute in [("reference", False), ("fused", False), ("fused", True)]:
        op.backend, op.recompute = backend, recompute
        per_backend[backend, recompute] = saved_activation_bytes(
            op, lambda: op(x, alpha.softmax(-1))
        )
    reference = per_backend["reference", False]
    assert per_backend["fused", True] <= reference / 5
    assert per_backend["fused", False] <= reference  # the default mode saves less, too
    x_bytes = x.numel() * x.element_size()
    assert per_backend["fused", True] <= 1.1 * x_bytes  # ~ the input (and α's softmax)


def test_recompute_matches_reference_gradients_in_a_supernet():
    torch.manual_seed(1)
    ref = SuperNet(num_classes=2, layers=2, filter_multiplier=1, backend="reference")
    rec = convert_mixed_ops(copy.deepcopy(ref), "fused", recompute=True)
    x = torch.randn(2, 3, 17, 19)

    def grads(net):
        net.zero_grad()
        net(x).square().mean().backward()
        return [p.grad.clone() for p in net.parameters()]

    for a, b in zip(grads(rec), grads(ref), strict=True):  # float32 through two BN'd layers
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * max(1.0, b.abs().max().item()))
    bytes_ref = saved_activation_bytes(ref, lambda: ref(x))
    bytes_rec = saved_activation_bytes(rec, lambda: rec(x))
    assert bytes_rec < bytes_ref / 2  # the edges dominate a SuperNet's activations
