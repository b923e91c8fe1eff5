"""``--compile`` for the search: torch.compile of the one region that repeats, the transition.

What is compiled, and why only that (measured on the tiny preset, 2-core CPU, one thread;
docs/PERFORMANCE.md, ``--compile``):

- The cells stay eager: each already runs as one hand-written autograd node
  (fastadl/ops/cell/function.py) whose Python-level plan dispatch dynamo would unroll per node
  shape (a tiny supernet's cells alone took more than 5 minutes to compile).
- Every ``SearchReLUConvBN`` of the trellis (the H^{l-1} transitions, the 1×1 after the upsampling
  one, and each step of the H^{l-2} reductions: 41 modules in the tiny supernet) runs **one**
  compiled ``SearchReLUConvBN.forward``, so modules of the same configuration and input shape share
  a graph: 19 in the tiny supernet's weight step, compiled in 35-46 s, where each node's whole
  ``TrellisNode.inputs`` (9 bigger graphs, with the stem and heads 15) took ~190 s.
- Static shapes (``dynamic=False``): a search's training shapes are fixed (full batches, fixed
  crops), dynamic-shape graphs took 1.8× as long to compile, and their backward specialised the
  spatial size anyway (so they were not shared across levels).
- Only where a gradient passes: validation and evaluation (eval mode or no_grad) run the same
  modules eagerly, so their variants are never compiled (they were a fifth of the compile
  time, for ~80 forwards in a tiny search), and so do the α/β step's
  transitions of the frozen stem's output (nothing there needs a gradient: a forward-only
  variant per shape, for one eager call per step).
- Inductor's C++ kernels without SIMD vectorization (``cpp.vec_isa_ok=False``, for this
  function only; **decision**): a graph compiles in ~35% less time, for ~0.17 ms more per call
  on the level-0 transitions only (at 8² and 4² maps both forms run alike).
- The stem and the ASPP heads are not compiled (**decision**): each is a graph of its own
  (6 per variant in the tiny supernet) run once per forward, and on this CPU no compiled region
  ran faster than eager once compiled, so a graph that is not shared only adds compile time.

The weight step (α/β frozen) and the α/β step (weights frozen, so the transitions only pass
gradients to their inputs) are different graphs; each compiles on its first step, and after
that the two steps alternate without recompiling (tests/nn/test_compile_regions.py).
:func:`compile_stats` reports what was compiled and how long it took.
"""

from __future__ import annotations

import functools

import torch

from fastadl.nn.search.supernet import SuperNet
from fastadl.nn.search.transitions import SearchReLUConvBN

# Graphs of the one compiled function: distinct transition configurations × input shapes ×
# {weight step, α/β step}. Beyond dynamo's default of
# 8 per function it would fall back to eager silently.
RECOMPILE_LIMIT = 256


def compile_regions(model: SuperNet) -> SuperNet:
    """Compile ``model``'s transitions in place (see the module docstring); returns it."""
    if not isinstance(model, SuperNet):
        raise TypeError(f"compile_regions needs a SuperNet, got {type(model).__name__}")
    config = torch._dynamo.config
    limit_name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit_name, max(getattr(config, limit_name), RECOMPILE_LIMIT))
    compiled = torch.compile(
        SearchReLUConvBN.forward, dynamic=False, options={"cpp.vec_isa_ok": False}
    )
    for node in model.nodes.values():
        for module in node.modules():
            if isinstance(module, SearchReLUConvBN):
                # shadows the method on this module only
                module.forward = functools.partial(_training_forward, compiled, module)
    return model


def _training_forward(compiled, module: SearchReLUConvBN, x: torch.Tensor) -> torch.Tensor:
    """``compiled`` where a training step passes a gradient through ``module`` (to its input
    or its conv weight), else the eager forward (eval mode, no_grad, a frozen constant input)."""
    conv = module.op[1]
    wants_grad = x.requires_grad or conv.weight.requires_grad
    if module.training and torch.is_grad_enabled() and wants_grad:
        return compiled(module, x)
    return SearchReLUConvBN.forward(module, x)


def compile_stats() -> tuple[int, float]:
    """(graphs compiled so far in this process, seconds spent compiling them, forward and
    backward), from dynamo's counters."""
    from torch._dynamo.utils import calculate_time_spent, counters

    graphs = counters["stats"]["unique_graphs"]
    return graphs, calculate_time_spent().get("total_wall_time", 0.0)
