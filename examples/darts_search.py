"""DARTS' CIFAR-10 search network (Liu et al., "DARTS", ICLR 2019), built on fastadl.MixedOp.

Written the way DARTS-style code is written: the only fastadl import that matters is MixedOp
(``from fastadl import MixedOp`` where DARTS' model_search.py defines its own), so the same
file runs on every backend. The network (DARTS' search settings): a 3×3 conv stem with 3·C
channels, 8 cells with C = 16 doubling at the two reduction cells (cells 2 and 5), 4 steps per
cell summing MixedOps over all earlier states (2 + 3 + 4 + 5 = 14 edges), the concat of the 4
step outputs as the cell output, global average pooling and a linear classifier. Normal cells
share α_normal (14, 8), reduction cells α_reduce; the edges a reduction cell reads from its two
inputs have stride 2. ``partial_channels=K`` gives PC-DARTS' variant: partial-channel edges
plus edge normalisation (β per edge, softmax over each step's inputs).

One search iteration, first-order DARTS: an α step (Adam, lr 3e-4, betas (0.5, 0.999), weight
decay 1e-3) on a validation batch, then a weight step (SGD, lr 0.025, momentum 0.9, weight decay
3e-4, gradient norm clipped at 5) on a training batch.

    python examples/darts_search.py --steps 20 --batch-size 64 --backend auto
        (random CIFAR-sized data: this file shows the code path and its speed, not accuracy;
        benchmarks/bench_darts_search.py times it per backend)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from fastadl import PRIMITIVES, MixedOp
from fastadl.nn.search.transitions import SearchReLUConvBN
from fastadl.ops.reference import FactorizedReduce
from fastadl.space.cell_topology import edge_offset, num_edges
from fastadl.space.genotype import decode_cell


class DartsSearchCell(nn.Module):
    """DARTS' search cell: preprocess both inputs to C channels, then step i sums the MixedOps
    of every earlier state; output = concat of the last ``multiplier`` states (4C channels)."""

    def __init__(
        self,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        steps: int = 4,
        multiplier: int = 4,
        **mixed_op_kwargs,
    ):
        super().__init__()
        self.reduction = reduction
        self.steps, self.multiplier = steps, multiplier
        # the previous cell halved the size: s0 (two cells back) must be halved too
        pre0 = (
            FactorizedReduce(C_prev_prev, C) if reduction_prev else SearchReLUConvBN(C_prev_prev, C)
        )
        self.preprocess0, self.preprocess1 = pre0, SearchReLUConvBN(C_prev, C)
        self.edges = nn.ModuleList(
            MixedOp(C, 2 if reduction and j < 2 else 1, **mixed_op_kwargs)
            for i in range(steps)
            for j in range(2 + i)
        )

    def forward(self, s0, s1, weights, edge_weights=None):
        """s0, s1: (N, C_prev_prev | C_prev, H, W); weights: (14, 8) softmax(α); edge_weights:
        (14,) PC-DARTS' normalised β or None → (N, 4C, H', W'), H' = H/2 in a reduction cell."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            h = 0
            for j, state in enumerate(states):
                e = edge_offset(i) + j
                y = self.edges[e](state, weights[e])
                h = h + (y if edge_weights is None else edge_weights[e] * y)
            states.append(h)
        return torch.cat(states[-self.multiplier :], dim=1)


class DartsSearchNetwork(nn.Module):
    """Stem → ``layers`` cells (reductions at layers // 3 and 2 · layers // 3) → pool → linear.

    alphas_normal / alphas_reduce: (14, 8) nn.Parameters (1e-3 · N(0, 1), DARTS' init); with
    partial_channels > 1 also betas_normal / betas_reduce: (14,). backend / recompute /
    partial_channels are passed to every MixedOp."""

    def __init__(
        self,
        C: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        backend: str = "auto",
        recompute: bool = False,
        partial_channels: int = 1,
    ):
        super().__init__()
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(3, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            C_curr *= 2 if reduction else 1
            self.cells.append(
                DartsSearchCell(
                    C_prev_prev, C_prev, C_curr, reduction, reduction_prev, steps, multiplier,
                    backend=backend, recompute=recompute, partial_channels=partial_channels,
                )
            )  # fmt: skip
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.classifier = nn.Linear(C_prev, num_classes)
        self.steps = steps
        E = num_edges(steps)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(E, len(PRIMITIVES)))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(E, len(PRIMITIVES)))
        self.partial = partial_channels > 1
        if self.partial:
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(E))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(E))

    def arch_parameters(self) -> list[nn.Parameter]:
        names = ("alphas_normal", "alphas_reduce") + ("betas_normal", "betas_reduce") * self.partial
        return [getattr(self, n) for n in names]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def _edge_weights(self, betas: torch.Tensor) -> torch.Tensor:
        """PC-DARTS' edge normalisation: softmax of β over each step's 2 + i inputs."""
        rows = [
            betas[edge_offset(i) : edge_offset(i) + 2 + i].softmax(-1) for i in range(self.steps)
        ]
        return torch.cat(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) → logits (N, num_classes)."""
        w = {False: self.alphas_normal.softmax(-1), True: self.alphas_reduce.softmax(-1)}
        b = {False: None, True: None}
        if self.partial:
            b = {
                False: self._edge_weights(self.betas_normal),
                True: self._edge_weights(self.betas_reduce),
            }
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w[cell.reduction], b[cell.reduction])
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))

    def genotype(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """DARTS' decoding per cell type: per step the 2 strongest inputs, each with its best op
        other than `none` (fastadl.space.genotype.decode_cell). From α alone (PC-DARTS also weighs
        the inputs by β: not done here)."""
        return {
            "normal": decode_cell(self.alphas_normal),
            "reduce": decode_cell(self.alphas_reduce),
        }


def make_optimizers(net: DartsSearchNetwork):
    """(weight SGD, architecture Adam) with DARTS' CIFAR-10 search settings."""
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    return w_opt, a_opt


def _step(loss: torch.Tensor, params: list[nn.Parameter], opt, clip: float | None = None) -> None:
    """One optimizer step on ``params`` with the gradients of ``loss`` w.r.t. them only."""
    for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
        p.grad = g
    if clip is not None:
        nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def search_iteration(net, w_opt, a_opt, train_batch, val_batch) -> tuple[float, float]:
    """First-order DARTS: an α step on val_batch (gradients of α only), then a weight step on
    train_batch (gradients of the weights only). Returns (validation loss, training loss)."""
    x, y = val_batch
    val_loss = F.cross_entropy(net(x), y)
    _step(val_loss, net.arch_parameters(), a_opt)
    x, y = train_batch
    loss = F.cross_entropy(net(x), y)
    _step(loss, net.weight_parameters(), w_opt, clip=5.0)
    return val_loss.item(), loss.item()


def random_batch(batch_size: int, size: int = 32, classes: int = 10, device="cpu", seed: int = 0):
    """A CIFAR-shaped batch of noise: (images (N, 3, size, size), labels (N,))."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, size, size, generator=gen)
    return x.to(device), torch.randint(0, classes, (batch_size,), generator=gen).to(device)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="search iterations to run")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (DARTS: 64)")
    parser.add_argument("--image-size", type=int, default=32, help="image side (CIFAR: 32)")
    parser.add_argument("--channels", type=int, default=16, help="initial channels C (DARTS: 16)")
    parser.add_argument("--layers", type=int, default=8, help="cells (DARTS: 8)")
    parser.add_argument(
        "--backend", default="auto", choices=("auto", "fused", "triton", "reference"),
        help="MixedOp backend (auto: triton on CUDA, fused on CPU)",
    )  # fmt: skip
    parser.add_argument("--partial-channels", type=int, default=1, help="PC-DARTS' K (1: DARTS)")
    parser.add_argument("--recompute", action="store_true", help="fused: recompute in backward")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    args = parser.parse_args(argv)
    device = (
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    for flag in ("steps", "batch_size", "image_size", "channels", "layers"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    try:
        net = DartsSearchNetwork(
            args.channels, layers=args.layers, backend=args.backend, recompute=args.recompute,
            partial_channels=args.partial_channels,
        ).to(device)  # fmt: skip
    except ValueError as e:  # e.g. a --partial-channels that does not divide the channels
        parser.error(f"--partial-channels / --channels: {e}")
    w_opt, a_opt = make_optimizers(net)
    train = random_batch(args.batch_size, args.image_size, device=device, seed=1)
    val = random_batch(args.batch_size, args.image_size, device=device, seed=2)
    t0 = time.perf_counter()
    for _ in (bar := tqdm(range(args.steps), desc="search", file=sys.stderr)):
        val_loss, loss = search_iteration(net, w_opt, a_opt, train, val)
        bar.set_postfix(train=f"{loss:.3f}", val=f"{val_loss:.3f}")
    per_step = (time.perf_counter() - t0) / args.steps
    print(f"{per_step:.3f} s per search iteration ({args.backend}, {device})")
    print("genotype:", net.genotype())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
