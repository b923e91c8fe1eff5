"""How far the float32 reference and the cell path are from float64, tensor by tensor, over
random roundings of one float64 network (issue 23, docs/TESTING.md).

    python scripts/float32_spread.py --seed 0 --roundings 16 [--save errors.pt]

The L = 4 supernet of tests/ops/cell/test_cell_path_float64.py (α and β from N(0, 1), 49×53
images of 2; --seed 0 is the test's network) is rounded to float32 in --roundings random ways
(fastadl/diagnostics/float32_error.py) and each rounding is run through the reference, the
cell path with the C++ kernels, and the cell path without them (the route a GPU runs). A second,
independent set of roundings of the reference is the control: two equally accurate
computations, whose per-tensor ratio shows how far apart luck alone puts them. Printed per
path: the worst per-tensor ratio of RMS errors against the reference's and how many tensors
exceed 2× and 3×, and how many exceed the test's bound (3× plus a floor of two ulps), for the
first 8 roundings and for all of them, and the geometric mean ratio.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from fastadl import SuperNet
from fastadl.diagnostics.float32_error import (
    named_errors,
    named_outputs_and_grads,
    rms_errors,
    roundings,
)
from fastadl.kernels import cpu

CLASSES = 5


def supernet(backend: str) -> SuperNet:
    return SuperNet(CLASSES, layers=4, filter_multiplier=2, block_multiplier=5, backend=backend)


def float64_network(seed: int) -> SuperNet:
    """The test's construction: α and β drawn in float32, then everything in float64."""
    torch.manual_seed(seed)
    net = supernet("reference")
    with torch.no_grad():
        net.alphas.normal_(0, 1)
        net.betas.normal_(0, 1)
    return net.double().train()


def run(backend: str, state, x, upstream, want) -> dict[str, float]:
    net = supernet(backend)
    net.load_state_dict(state)
    return named_errors(net.train(), x, upstream, want)


# the test's floor: two float32 ulps of 1.0, below which a ratio of errors means nothing
FLOOR = 2 * 2.0**-24


def summary(label: str, errs: list[dict], ref: list[dict], k: int) -> str:
    a, b = rms_errors(errs[:k]), rms_errors(ref[:k])
    ratio = sorted(((a[n] / max(b[n], 1e-12), n) for n in a), reverse=True)
    gm = math.exp(sum(math.log(max(r, 1e-12)) for r, _ in ratio) / len(ratio))
    bound = sum(a[n] > 3 * b[n] + FLOOR for n in a)
    return (f"  {label:26s} {k:2d} roundings: worst {ratio[0][0]:5.2f} ({ratio[0][1]}), "
            f"over 2x: {sum(r > 2 for r, _ in ratio)}, over 3x: {sum(r > 3 for r, _ in ratio)}, "
            f"over the test's bound (3x + 2 ulps): {bound}, geometric mean {gm:.3f}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="supernet seed (the test uses 0)")
    p.add_argument("--roundings", type=int, default=16, help="random roundings per path")
    p.add_argument("--save", help="save every rounding's per-tensor errors here (torch.save)")
    args = p.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(2, 3, 49, 53, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    upstream = torch.randn((2, CLASSES, 49, 53), generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)  # fmt: skip
    ref64 = float64_network(args.seed)
    state64 = {k: v.clone() for k, v in ref64.state_dict().items()}
    want = named_outputs_and_grads(ref64, x, upstream)
    library = cpu.library
    errors: dict[str, list[dict]] = {}
    t0 = time.time()
    for label, seed, backend, kernels in (
        ("reference", 1000, "reference", True),
        ("reference, other roundings", 5000, "reference", True),
        ("cell path, C++ kernels", 1000, "auto", True),
        ("cell path, no C++ kernels", 1000, "auto", False),
    ):
        cpu.library = library if kernels else (lambda: None)
        errors[label] = [run(backend, s, xk, upstream, want)
                         for s, xk in roundings(state64, x, args.roundings, seed)]  # fmt: skip
    cpu.library = library
    print(f"seed {args.seed}: {len(want)} tensors, {time.time() - t0:.0f} s")
    ref = errors["reference"]
    for label, errs in errors.items():
        if label != "reference":
            for k in sorted({min(8, args.roundings), args.roundings}):
                print(summary(label, errs, ref, k))
    if args.save:
        torch.save(errors, args.save)


if __name__ == "__main__":
    main()
