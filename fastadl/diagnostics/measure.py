"""Launches, bytes and saved activations of every piece of a search iteration, per backend,
counted on fake tensors (fastadl/diagnostics/counting.py) through the real modules: a SuperNet
built with ``backend=`` under FakeTensorMode, with as many layers as it takes to hold every
distinct node configuration (pieces.REPEATING_LAYER), so whatever fast path sits behind the
modules is what is counted.

Two step kinds, as the search loop runs them: ``weight`` (α, β frozen; gradients of every
weight and of every input that needs one; saved activations measured here) and ``arch``
(``torch.autograd.grad`` of the loss for α and β with the weights frozen, as
fastadl/search/architect.py does: autograd runs a piece's backward only as far as its inputs
depend on α or β, and no weight gradient is computed).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from fastadl.diagnostics.counting import Counts, count
from fastadl.diagnostics.pieces import REPEATING_LAYER, Piece
from fastadl.diagnostics.workloads import NetSpec
from fastadl.nn import SuperNet
from fastadl.nn.search.supernet import level_sizes
from fastadl.runtime.steps import frozen


def _call(net: SuperNet, p: Piece, s: NetSpec) -> tuple[list[nn.Parameter], Callable]:
    """The parameters a piece uses and a function running it on its inputs."""
    if p.kind == "stem":
        return [*net.stem0.parameters(), *net.stem1.parameters()], lambda x: net.stem1(net.stem0(x))
    if p.kind == "head":
        head = net.heads[str(p.level)]

        def run_head(x):
            return F.interpolate(
                head(x), size=(s.height, s.width), mode="bilinear", align_corners=False
            )

        return list(head.parameters()), run_head
    if p.kind == "loss":
        labels = torch.zeros(s.batch, s.height, s.width, dtype=torch.long)
        return [], lambda logits: F.cross_entropy(logits, labels, ignore_index=255)
    node = net.nodes[net.node_key(p.layer, p.level)]
    if p.kind == "cell":
        P = len(p.shapes) - 3  # (s0, s1 × P, softmaxed α, β of the paths)

        def run_cell(s0, *rest):
            return node.cell.forward_paths(s0, list(rest[:P]), rest[P], rest[P + 1])

        return list(node.cell.parameters()), run_cell
    if p.kind == "pre_prev_prev":
        return list(node.pre_prev_prev.parameters()), node.pre_prev_prev
    pre = node.pre_prev[p.path]
    if p.path == "from_coarser":
        size = level_sizes(s.height, s.width)[p.level]
        return list(pre.parameters()), lambda x: pre(x, size)
    return list(pre.parameters()), pre


def _measure(net: SuperNet, p: Piece, s: NetSpec, step: str) -> Counts:
    params, run = _call(net, p, s)
    inputs = [torch.empty(shape).requires_grad_(p.kind != "stem") for shape in p.shapes]
    if p.kind == "cell":  # the softmaxed α and β: require grad in the α/β step only
        for t in inputs[-2:]:
            t.requires_grad_(step == "arch")
    if step == "weight":
        wanted = [t for t in inputs if t.requires_grad] + params
    else:  # only what leads to α or β
        wanted = [
            t for t, dep in zip(inputs, p.arch_inputs, strict=True) if dep and t.requires_grad
        ]

    def forward_backward():
        with frozen(params if step == "arch" else []):
            out = run(*inputs)
            if wanted:
                torch.autograd.grad(out, wanted, out.new_empty(out.shape), allow_unused=True)

    return count(forward_backward, (lambda: params) if step == "weight" else None)


def measure_pieces(
    s: NetSpec, pieces: list[Piece], backend: str, progress: Callable[[], None] = lambda: None
) -> dict[str, Counts]:
    """Per step kind ("weight", "arch"), the whole iteration's counts under ``backend``."""
    totals = {"weight": Counts(), "arch": Counts()}
    with FakeTensorMode():
        with torch.random.fork_rng(devices=[]):
            net = SuperNet(
                s.classes,
                layers=min(s.layers, REPEATING_LAYER),
                filter_multiplier=s.filter_multiplier,
                block_multiplier=s.block_multiplier,
                backend=backend,
            ).train()
        for p in pieces:
            for step in totals:
                totals[step] = totals[step] + _measure(net, p, s, step) * p.count
            progress()
    return totals
