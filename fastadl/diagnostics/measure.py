"""Launches, bytes and saved activations of every piece of a search iteration, per route,
counted on meta tensors (fastadl/diagnostics/counting.py) through the real modules: a SuperNet
built with the route's backend on the meta device, deep enough to hold the first layer of
every distinct piece, so whatever fast path sits behind the modules is what is counted.

Routes (what a search runs; fastadl/ops/dispatch.py ``auto_summary``):
- ``cuda``: the cell-level path on ATen operators, every C++ kernel off, as a CUDA tensor
  takes it. Meta tensors count the same operators as FakeTensorMode's CPU tensors (the
  convolutions' output layout corrected: counting.py) in a fifth of the time (issue 26).
- ``cpu``: the same path with the C++ kernels wherever they take a CPU tensor of that shape
  (``fastadl.kernels.cpu.stand_in``: each kernel call is counted as one launch, its bytes and
  FLOPs are not).
- ``reference``: the literal edge-by-edge sum, for comparison.

Step kinds, as the search loop runs them: ``weight`` (α, β frozen; gradients of every weight
and of every input that needs one; saved activations measured here), ``arch``
(``torch.autograd.grad`` of the loss for α and β with the weights frozen, as
fastadl/search/architect.py does: autograd runs a piece's backward only as far as its inputs
depend on α or β) and ``forward`` (validation: no gradients).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from fastadl.diagnostics.counting import Counts, count
from fastadl.diagnostics.pieces import Piece
from fastadl.diagnostics.workloads import NetSpec
from fastadl.kernels import cpu
from fastadl.nn import SuperNet
from fastadl.nn.search.supernet import level_sizes
from fastadl.runtime.steps import frozen

ROUTES = {"cuda": "auto", "cpu": "auto", "reference": "reference"}  # route → backend
STEPS = ("weight", "arch")


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
    if step == "forward":  # validation: no autograd graph at all
        inputs = [torch.empty(shape) for shape in p.shapes]

        def forward():
            with torch.no_grad():
                run(*inputs)

        return count(forward) if p.kind != "loss" else Counts()  # validation has no loss
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
    s: NetSpec,
    pieces: list[Piece],
    route: str,
    steps: tuple[str, ...] = STEPS,
    progress: Callable[[], None] = lambda: None,
    fake: bool = False,
) -> dict[str, Counts]:
    """Per step kind (``steps``: "weight", "arch", "forward"), the pieces' counts times their
    multiplicities, summed, on ``route`` (one of ROUTES). ``fake``: count on FakeTensorMode's
    CPU tensors instead of meta tensors (~5× slower; the test that the two agree)."""
    totals = {step: Counts() for step in steps}
    kernels = Counts()

    def record(name: str) -> None:
        kernels.launches += 1

    on_cpu = cpu.stand_in(record) if route == "cpu" else contextlib.nullcontext()
    with FakeTensorMode() if fake else torch.device("meta"), on_cpu:
        with torch.random.fork_rng(devices=[]):
            net = SuperNet(
                s.classes,
                layers=max(p.layer for p in pieces) or 1,
                filter_multiplier=s.filter_multiplier,
                block_multiplier=s.block_multiplier,
                backend=ROUTES[route],
            ).train()
        for p in pieces:
            for step in steps:
                kernels.launches = 0
                got = _measure(net, p, s, step)
                got.launches += kernels.launches  # the C++ kernels' calls (cpu route)
                totals[step] = totals[step] + got * p.count
            progress()
    return totals
