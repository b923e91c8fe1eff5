"""The workloads the self-check compares and times, built per backend through the public
modules (MixedOp, SearchCell, SuperNet with ``backend=``), so whatever fast path sits behind
them (the edge-level backends, a cell- or node-level path) is what runs.

A Case holds one module and the leaf inputs of one forward; every backend's Case is loaded from
the reference's state_dict, so all of them compute with the same parameters and statistics.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from fastadl.nn import MixedOp, SearchCell, SuperNet
from fastadl.space.cell_topology import num_edges
from fastadl.space.primitives import PRIMITIVES


@dataclass
class Case:
    """module(inputs) → one output tensor; ``wrt`` is what gradients are compared for."""

    module: nn.Module
    inputs: dict[str, Tensor]  # leaf tensors requiring grad, by name
    call: Callable[[nn.Module, dict[str, Tensor]], Tensor]
    names: list[str] = field(init=False)

    def __post_init__(self):
        params = [f"grad {n}" for n, _ in self.module.named_parameters()]
        self.names = ["output", *(f"grad {n}" for n in self.inputs), *params]

    def wrt(self) -> list[Tensor]:
        return [*self.inputs.values(), *self.module.parameters()]

    def forward(self) -> Tensor:
        return self.call(self.module, self.inputs)

    def buffers(self) -> tuple[list[str], list[Tensor]]:
        """BatchNorm running statistics (and counters) as float32, with their names."""
        named = list(self.module.named_buffers())
        return [f"buffer {n}" for n, _ in named], [b.detach().float() for _, b in named]


def _leaf(shape, seed: int, device: torch.device) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(device).requires_grad_()


def _built(make: Callable[[], nn.Module], like: nn.Module | None, device: torch.device):
    """make() on ``device`` with ``like``'s state (or a fixed seed when building the first)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        module = make().to(device)
    if like is not None:
        module.load_state_dict(like.state_dict())
    return module


def edge_case(shape, backend: str, device, like: nn.Module | None = None) -> Case:
    """One MixedOp over all PRIMITIVES: x (N, C, H, W), α logits (K,) → (N, C, H, W)."""
    op = _built(lambda: MixedOp(shape[1], backend=backend), like, device)
    inputs = {"x": _leaf(shape, 1, device), "alpha": _leaf((len(PRIMITIVES),), 2, device)}
    return Case(op, inputs, lambda m, i: m(i["x"], i["alpha"].softmax(-1)))


def cell_case(C: int, blocks: int, size, backend: str, device, like=None) -> Case:
    """One SearchCell: s0, s1 (N, C, H, W), α logits (E, K) → (N, B·C, H, W); size = (N, H, W)."""
    cell = _built(lambda: SearchCell(C, blocks, backend=backend), like, device)
    N, H, W = size
    inputs = {
        "s0": _leaf((N, C, H, W), 1, device),
        "s1": _leaf((N, C, H, W), 2, device),
        "alpha": _leaf((num_edges(blocks), len(PRIMITIVES)), 3, device),
    }
    return Case(cell, inputs, lambda m, i: m(i["s0"], i["s1"], i["alpha"].softmax(-1)))


@dataclass(frozen=True)
class NetSpec:
    """A SuperNet and its input batch: (batch, 3, height, width) images, ``classes`` labels."""

    layers: int
    filter_multiplier: int
    block_multiplier: int
    classes: int
    batch: int
    height: int
    width: int

    def label(self) -> str:
        return (
            f"L={self.layers} F={self.filter_multiplier} B={self.block_multiplier}, "
            f"{self.batch}×3×{self.height}×{self.width}"
        )

    def build(self, backend: str) -> SuperNet:
        return SuperNet(
            self.classes,
            layers=self.layers,
            filter_multiplier=self.filter_multiplier,
            block_multiplier=self.block_multiplier,
            backend=backend,
        )


def supernet_case(spec: NetSpec, backend: str, device, like=None) -> Case:
    """The SuperNet's logits (N, classes, H, W) for an image batch; α and β are parameters."""
    net = _built(lambda: spec.build(backend), like, device)
    inputs = {"x": _leaf((spec.batch, 3, spec.height, spec.width), 1, device)}
    return Case(net, inputs, lambda m, i: m(i["x"]))


def randomize_running_stats(module: nn.Module, seed: int = 0) -> None:
    """Running means in ±0.5 and variances in [0.5, 2] (fresh BNs hold 0 and 1: eval-mode
    checks would then not test the statistics at all)."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=gen))


def fwd_bwd_step(case: Case, device: torch.device) -> Callable[[], None]:
    """A closure running the case's forward and backward (grads reset, not summed)."""
    from fastadl.diagnostics.timing import synchronize

    out = case.forward()
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
    params = list(case.module.parameters())

    def step() -> None:
        for t in (*case.inputs.values(), *params):
            t.grad = None
        case.forward().backward(g)
        synchronize(device)

    return step


def iteration_batches(spec: NetSpec, device: torch.device):
    """Two fixed batches ((xa, ya), (xb, yb)) for a search iteration on ``spec``'s SuperNet:
    images (N, 3, H, W) from N(0, 1), labels (N, H, W) in 0..classes-1."""
    gen = torch.Generator().manual_seed(0)
    shape = (spec.batch, 3, spec.height, spec.width)
    xa, xb = (torch.randn(shape, generator=gen).to(device) for _ in range(2))
    labels = (spec.batch, spec.height, spec.width)
    ya, yb = (torch.randint(spec.classes, labels, generator=gen).to(device) for _ in range(2))
    return (xa, ya), (xb, yb)


def iteration_workload(net: SuperNet, spec: NetSpec, device: torch.device, amp: str = "off",
                       cfg=None, batches=None):  # fmt: skip
    """(SearchIteration, batches): the search's own iteration (fastadl/search/architect.py) on
    a copy of ``net`` (the steps change the weights: the caller's are left alone).

    cfg: the search's settings (a SearchConfig); default: the search's defaults (the paper's
    learning rates, gradient clip and optimizers) with ``amp``. batches: default
    ``iteration_batches(spec, device)``."""
    from fastadl.search.architect import SearchIteration
    from fastadl.search.config import SearchConfig

    cfg = SearchConfig(amp=amp) if cfg is None else cfg
    net = copy.deepcopy(net).train()
    batches = iteration_batches(spec, device) if batches is None else batches
    return SearchIteration(net, cfg, device), batches


def iteration_case(spec: NetSpec, backend: str, amp: str, device, like=None):
    """(SearchIteration, batches) for ``spec``'s SuperNet under ``backend`` with ``like``'s
    state (a fixed seed when None), as iteration_workload builds it."""
    net = _built(lambda: spec.build(backend), like, device)
    return iteration_workload(net, spec, device, amp)


def search_iteration(
    net: SuperNet, spec: NetSpec, device: torch.device, amp: str = "off", arch: bool = True
):
    """A closure running one search iteration as the search does: the weight step (FlatSGD,
    gradient clip, GradScaler under fp16) on one batch, then (``arch``) the α/β step (the
    Architect's Adam) on another, then the non-finite watch read (SearchIteration.closure)."""
    from fastadl.diagnostics.timing import synchronize

    iteration, batches = iteration_workload(net, spec, device, amp)
    run = iteration.closure(batches, arch)

    def step() -> None:
        run()
        synchronize(device)

    return step
