"""``--compile`` for the search: torch.compile of the regions that repeat, not of the supernet.

Compiling the whole SuperNet traces ~40 nodes × hundreds of ops as one graph (it had not
finished its first step after 15 minutes on the tiny preset). The cells already run as one
hand-written autograd node each (fastadl/ops/cell_function.py), whose Python-level plan
dispatch dynamo would have to unroll per node shape (a tiny supernet's cells alone took more
than 5 minutes to compile), so they stay eager. What is compiled is the glue that repeats:

- every node's ``TrellisNode.inputs`` (H^{l-2} reduction, the P H^{l-1} transitions, the paths'
  β): **one** compiled function shared by all nodes, so nodes of the same structure and level
  share a graph, and shapes are dynamic, so compile work grows with the number of distinct
  node structures (a handful), not with L;
- the stem and the ASPP heads (one compiled callable each, dynamic shapes).

Compile time is bounded by that, reported by the caller (first-iteration time), and the
α/β step (weights frozen) compiles its own variant once, on its first step; after that the
weight and α/β steps alternate without recompiling.
"""

from __future__ import annotations

import functools

import torch

from fastadl.nn.supernet import SuperNet, TrellisNode

# Distinct node structures in one trellis: (incoming paths, H^{l-2} reduction, level) and the
# weight / α-β step variants. Beyond dynamo's default of 8 graphs per function it would fall
# back to eager silently.
RECOMPILE_LIMIT = 64


def compile_regions(model: SuperNet) -> SuperNet:
    """Compile ``model``'s repeated regions in place (see the module docstring); returns it."""
    if not isinstance(model, SuperNet):
        raise TypeError(f"compile_regions needs a SuperNet, got {type(model).__name__}")
    config = torch._dynamo.config
    limit_name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit_name, max(getattr(config, limit_name), RECOMPILE_LIMIT))
    inputs = torch.compile(TrellisNode.inputs, dynamic=True)
    for node in model.nodes.values():
        node.inputs = functools.partial(inputs, node)  # shadows the method on this node
    for name in ("stem0", "stem1"):
        getattr(model, name).compile(dynamic=True)
    for head in model.heads.values():
        head.compile(dynamic=True)
    return model
