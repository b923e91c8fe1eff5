"""One search iteration as a list of pieces (stem, transitions, cell evaluations, heads, loss),
each with how often it runs per forward and its convolutions: the cost model's structure.

The structure follows the SuperNet (docs/METHOD.md §2, fastadl/nn/search/supernet.py): per
node (layer l, level s) one H^{l-2} reduction, per incoming path one H^{l-1} transition, and
one call of the cell on all its paths (P cell evaluations). FLOPs are counted here
analytically: 2 per multiply-add of every convolution, forward; backward, one more
convolution's worth for the input gradient where the input needs one and one for the weight
gradient (weight step only). In the α/β step the
backward reaches a convolution only if its input depends on α or β: nothing before the first
mixed edge (the stem, layer 1's transitions, the edges of H^{l-2} and H^{l-1} while those are
still the stem's), which is also what autograd skips. tests/diagnostics/test_cost.py holds the total
against torch.utils.flop_counter on the reference backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastadl.diagnostics.workloads import NetSpec
from fastadl.nn.search.supernet import STEM0_LEVEL, level_sizes
from fastadl.space.cell_topology import num_edges
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import COARSER, FINER, SAME, incoming, levels_at


@dataclass(frozen=True)
class Conv:
    c_in: int
    c_out: int
    k: int
    groups: int
    batch: int
    h: int  # output height
    w: int  # output width
    input_grad: bool = True  # weight step: the input needs a gradient (not the raw image)
    arch_dep: bool = True  # α/β step: the input depends on α or β

    @property
    def macs(self) -> int:
        return self.batch * self.h * self.w * self.c_out * (self.c_in // self.groups) * self.k**2


@dataclass(frozen=True)
class Piece:
    """One module call of the forward, ``count`` times per forward."""

    kind: str  # stem | pre_prev | pre_prev_prev | cell | head | loss
    layer: int  # 0 for stem / head / loss; else the first layer whose module runs it
    level: int
    path: str  # transition: from_same | from_finer | from_coarser; cell: its number of paths
    count: int
    convs: tuple[Conv, ...]
    shapes: tuple[tuple[int, ...], ...]  # input shapes, in call order
    arch_inputs: tuple[bool, ...]  # which inputs depend on α/β

    def key(self) -> tuple:
        """What makes two module calls the same piece: the same kind of module at one level,
        on the same input shapes, with the same inputs depending on α/β (a node's modules
        depend on its level and inputs only, so the calls of every layer share one key)."""
        return (self.kind, self.level, self.path, self.shapes, self.arch_inputs)


def node_channels(level: int, F: int, B: int) -> int:
    """Channels of a node's output (stem0's for STEM0_LEVEL), as the SuperNet builds them."""
    return max(1, B * F // 2) if level == STEM0_LEVEL else B * F * 2**level


def _edge_convs(C: int, n: int, h: int, w: int, arch_dep: bool) -> list[Conv]:
    convs = []
    for name in PRIMITIVES:
        if name.startswith(("sep_conv", "dil_conv")):
            k = int(name[-1])
            stage = [
                Conv(C, C, k, C, n, h, w, arch_dep=arch_dep),
                Conv(C, C, 1, 1, n, h, w, arch_dep=arch_dep),
            ]
            convs += stage * (2 if name.startswith("sep_conv") else 1)
    return convs


def _reduce_convs(c_in, C, steps, n, sizes, level, arch_dep) -> list[Conv]:
    if steps == 0:
        return [Conv(c_in, C, 1, 1, n, *sizes[level], arch_dep=arch_dep)]
    out = []
    for i in range(steps):  # ReLU → 3×3 stride-2 conv → BN, from the finer level down
        h, w = sizes[level - steps + 1 + i]
        out.append(Conv(c_in if i == 0 else C, C, 3, 1, n, h, w, arch_dep=arch_dep))
    return out


def iteration_pieces(s: NetSpec, distinct: bool = True) -> list[Piece]:
    """The pieces of one forward of the SuperNet ``s`` describes, with their multiplicities:
    each distinct piece once (``distinct``; at most ~40 whatever the depth), or every module
    call as its own piece (count 1, at its own layer: the slow count the fast one must match)."""
    F, B, n = s.filter_multiplier, s.block_multiplier, s.batch
    sizes = level_sizes(s.height, s.width)
    half = node_channels(STEM0_LEVEL, F, B)
    pieces: dict[tuple, Piece] = {}

    def add(piece: Piece) -> None:
        key = piece.key() if distinct else (piece.layer, *piece.key())
        old = pieces.get(key)
        if old is None:  # the first call keeps its layer: the module that runs the piece
            pieces[key] = piece
        else:
            pieces[key] = Piece(**{**old.__dict__, "count": old.count + piece.count})

    stem = (Conv(3, half, 3, 1, n, *sizes[STEM0_LEVEL], input_grad=False, arch_dep=False),
            Conv(half, B * F, 3, 1, n, *sizes[0], arch_dep=False))  # fmt: skip
    add(Piece("stem", 0, 0, "", 1, stem, ((n, 3, s.height, s.width),), (False,)))
    for layer in range(1, s.layers + 1):
        dep_prev, dep_pp = layer >= 2, layer >= 3  # H^{l-1}, H^{l-2} computed by mixed cells
        for level in levels_at(layer):
            C, (h, w) = F * 2**level, sizes[level]
            # H^{l-2}: this level two layers back, or the nearest finer one (TrellisNode)
            pp_levels = [STEM0_LEVEL] if layer == 1 else list(levels_at(layer - 2))
            pp = max(lvl for lvl in pp_levels if lvl <= level)
            c_pp = node_channels(pp, F, B)
            convs = _reduce_convs(c_pp, C, level - pp, n, sizes, level, dep_pp)
            shape = (n, c_pp, *sizes[pp])
            add(Piece("pre_prev_prev", layer, level, "", 1, tuple(convs), (shape,), (dep_pp,)))
            for src, d in incoming(layer, level):
                c_src = node_channels(src, F, B)
                path = {COARSER: "from_finer", SAME: "from_same", FINER: "from_coarser"}[d]
                k = 3 if d == COARSER else 1  # from the finer level: "a stride-2 convolution"
                conv = Conv(c_src, C, k, 1, n, h, w, arch_dep=dep_prev)
                add(
                    Piece(
                        "pre_prev",
                        layer,
                        level,
                        path,
                        1,
                        (conv,),
                        ((n, c_src, *sizes[src]),),
                        (dep_prev,),
                    )
                )
            # the node's cell on all its P paths at once (SearchCell.forward_paths: one call
            # on the cell-level fast path, P edge-by-edge evaluations otherwise); the convs are
            # P evaluations' worth, what the method computes
            P = len(incoming(layer, level))
            edges = []
            for i in range(B):  # block i reads states 0..i+1: H^{l-2}, H^{l-1}, blocks
                for j in range(2 + i):
                    dep = (dep_pp, dep_prev)[j] if j < 2 else True
                    edges += _edge_convs(C, n, h, w, dep)
            shapes = ((n, C, h, w),) * (1 + P) + ((num_edges(B), len(PRIMITIVES)), (P,))
            deps = (dep_pp,) + (dep_prev,) * P + (True, True)
            add(Piece("cell", layer, level, f"{P} paths", 1, tuple(edges) * P, shapes, deps))
    for level in levels_at(s.layers):
        C, (h, w) = B * F * 2**level, sizes[level]
        head = (Conv(C, C, 1, 1, n, h, w), Conv(C, C, 3, 1, n, h, w), Conv(C, C, 1, 1, n, 1, 1),
                Conv(3 * C, C, 1, 1, n, h, w), Conv(C, s.classes, 1, 1, n, h, w))  # fmt: skip
        add(Piece("head", 0, level, "", 1, head, ((n, C, h, w),), (True,)))
    add(Piece("loss", 0, 0, "", 1, (), ((n, s.classes, s.height, s.width),), (True,)))
    return list(pieces.values())


@dataclass(frozen=True)
class Flops:
    weight_forward: int
    weight_backward: int
    arch_forward: int
    arch_backward: int

    @property
    def iteration(self) -> int:
        return self.weight_forward + self.weight_backward + self.arch_forward + self.arch_backward


def iteration_flops(pieces: list[Piece], recompute_cells: bool = False) -> Flops:
    """FLOPs of a weight step and an α/β step (2 per multiply-add). recompute_cells: the cells'
    backward reruns their forward first (the fused backend's recompute mode)."""
    wf = wb = af = ab = 0
    for p in pieces:
        fwd = sum(c.macs for c in p.convs)
        wf += p.count * fwd
        af += p.count * fwd
        wb += p.count * sum(c.macs * (1 + c.input_grad) for c in p.convs)
        ab += p.count * sum(c.macs * c.arch_dep for c in p.convs)
        if recompute_cells and p.kind == "cell":
            wb += p.count * fwd
            ab += p.count * sum(c.macs for c in p.convs if c.arch_dep)
    return Flops(2 * wf, 2 * wb, 2 * af, 2 * ab)
