"""The fastadl:: custom ops are registered so torch.compile can trace them: schema, fake
(meta) impls, autograd registration and AOT dispatch, checked by torch.library.opcheck."""

import pytest
import torch

import fastadl.ops.triton.functions  # noqa: F401  (registers torch.ops.fastadl.*)
from fastadl.ops.triton.backend import triton_mixed_op

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)


def _t(*shape, grad=True):
    return torch.randn(shape, device=DEVICE, requires_grad=grad)


CASES = {
    "weighted_sum": lambda: (_t(3, 2, 3, 5), _t(3)),
    "dwconv": lambda: (_t(2, 3, 5, 4), _t(4, 1, 5, 5), 2, True),
    "edge_dwconv_multi": lambda: (
        _t(1, 3, 5, 4),
        _t(2, 4, 9),
        _t(2, 4, 25),
        _t(2, 4, 9),
        _t(2, 4, 25),
    ),  # fmt: skip
    "pool3x3": lambda: (_t(2, 3, 5, 4),),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_opcheck(name):
    torch.library.opcheck(getattr(torch.ops.fastadl, name).default, CASES[name]())


def test_triton_mixed_op_compiles_without_graph_breaks():
    from fastadl.ops import OPS, PRIMITIVES

    ops = torch.nn.ModuleList(OPS[p](3, False) for p in PRIMITIVES).to(DEVICE)
    x = torch.randn(2, 3, 5, 7, device=DEVICE)
    w = torch.randn(len(PRIMITIVES), device=DEVICE).softmax(0)
    compiled = torch.compile(triton_mixed_op, backend="aot_eager", fullgraph=True)
    results = []
    for fn in (triton_mixed_op, compiled):
        xg = x.clone().requires_grad_()
        out = fn(xg, w, ops, PRIMITIVES)
        results.append((out, torch.autograd.grad(out.square().sum(), xg)[0]))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)
