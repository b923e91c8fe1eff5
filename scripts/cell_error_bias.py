"""Is the cell path systematically less accurate than the reference on some kind of tensor?
(issue 23, docs/TESTING.md)

    python scripts/cell_error_bias.py --channels 2 --size 13x14 --seeds 20 [--no-kernels]

One SearchCell's forward_paths (2 paths, 2 images, B = 5, α a softmax of N(0, 1) draws, β a
softmax), float32 against float64, for --seeds random cells and inputs: per kind of tensor
(every edge's depthwise weight of a 5×5 separable conv, say) the geometric mean over seeds
and edges of the ratio cell path / reference of the error from float64 (largest absolute
difference over the float64 tensor's largest magnitude), with its standard error in log. One
network's per-tensor ratios are mostly luck; averaged over many cells, a ratio that stays
above 1 by several standard errors is a real loss of accuracy.
"""

from __future__ import annotations

import argparse
import collections
import copy
import math
import re

import torch

from fastadl.diagnostics.float32_error import rel_error
from fastadl.kernels import cpu
from fastadl.nn.search.cell import SearchCell
from fastadl.nn.search.convert import convert_mixed_ops

PATHS, IMAGES, BLOCKS = 2, 2, 5


def cell_outputs_and_grads(cell, s0, s1s, w, b, g) -> dict[str, torch.Tensor]:
    leaves = [t.clone().requires_grad_() for t in (s0, *s1s, w, b)]
    out = cell.forward_paths(leaves[0], leaves[1 : 1 + PATHS], leaves[-2], leaves[-1])
    names, params = zip(*cell.named_parameters(), strict=True)
    grads = torch.autograd.grad(out, [*leaves, *params], g.to(out.dtype))
    found = {"output": out.detach(), "s0": grads[0], "s1": torch.cat(grads[1 : 1 + PATHS]),
             "alpha": grads[1 + PATHS], "beta": grads[2 + PATHS]}  # fmt: skip
    found.update(zip(names, grads[3 + PATHS :], strict=True))
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=2, help="C of the cell (default 2)")
    p.add_argument("--size", default="13x14", help="map size HxW (default 13x14)")
    p.add_argument("--seeds", type=int, default=20, help="random cells (default 20)")
    p.add_argument("--no-kernels", action="store_true", help="the route without the C++ kernels")
    args = p.parse_args()
    if args.no_kernels:
        cpu.library = lambda: None
    torch.set_num_threads(1)
    C = args.channels
    H, W = (int(v) for v in args.size.lower().split("x"))
    logs = collections.defaultdict(list)
    f64 = torch.float64
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        cell64 = SearchCell(C, BLOCKS, backend="reference").double().train()
        s0 = torch.randn(IMAGES, C, H, W, dtype=f64)
        s1s = [torch.randn(IMAGES, C, H, W, dtype=f64) for _ in range(PATHS)]
        w = torch.softmax(
            torch.randn(len(cell64.edges), len(cell64.edges[0].primitives), dtype=f64), -1
        )
        b = torch.softmax(torch.randn(PATHS, dtype=f64), 0)
        g = torch.randn(IMAGES, BLOCKS * C, H, W, dtype=f64)
        want = cell_outputs_and_grads(cell64, s0, s1s, w, b, g)
        ref32 = copy.deepcopy(cell64).float()
        fast32 = convert_mixed_ops(copy.deepcopy(ref32), "auto")
        inputs = (s0.float(), [s.float() for s in s1s], w.float(), b.float(), g)
        e_ref, e_fast = (cell_outputs_and_grads(c, *inputs) for c in (ref32, fast32))
        for name, t in want.items():
            kind = re.sub(r"edges\.\d+", "e", name)
            ratio = rel_error(e_fast[name], t) / max(rel_error(e_ref[name], t), 1e-12)
            logs[kind].append(math.log(max(ratio, 1e-12)))
    print(
        f"C = {C}, {H}×{W}, {args.seeds} cells, {'no C++ kernels' if args.no_kernels else 'C++ kernels'}"
    )
    for kind, v in sorted(logs.items(), key=lambda kv: -sum(kv[1]) / len(kv[1])):
        m = sum(v) / len(v)
        se = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))
        print(
            f"  {kind:28s} geometric mean ratio {math.exp(m):.2f} (standard error in log {se:.2f}, n = {len(v)})"
        )


if __name__ == "__main__":
    main()
