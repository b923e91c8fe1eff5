"""fastadl/ops/cell/saved_tree.py: a nested saved state comes back as it went in (same tensors,
containers of the same types, constants and None kept), with its tensors in a flat list."""

import torch

from fastadl.ops.cell.saved_tree import pack, unpack


def test_round_trip_keeps_structure_and_identity():
    t = [torch.zeros(i + 1) for i in range(5)]
    obj = (t[0], [(t[1], {"a": t[2], "b": None, "c": [t[3], 5]}), (t[4], None)], "x", None)
    tensors: list[torch.Tensor] = []
    spec = pack(obj, tensors)
    assert [id(x) for x in tensors] == [id(x) for x in t]  # depth first, each once
    back = unpack(spec, iter(tensors))
    assert back == obj  # same containers, constants and (identical) tensors
    assert type(back[1]) is list and type(back[1][0]) is tuple
    assert back[1][0][1]["a"] is t[2]
