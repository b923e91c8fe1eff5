"""How far one float32 search iteration's α/β gradient is from float64, for the reference and
the cell path, over random roundings of one float64 network (docs/TESTING.md, the self-check).

    python scripts/iteration_float32_spread.py --roundings 4 [--alpha-at-start]

The self-check's network shape (L = 3, F = 4, B = 3, 2×3×33×35 images, its fixed batches): the
weight step (the search's own, at its first learning rate), then the α/β step; printed per
rounding, each path's error from float64 (largest absolute difference over the float64
tensor's largest magnitude) in the α/β step's loss and its α and β gradients. With
--alpha-at-start the α/β step is taken at the weights before the weight step, as the
self-check compares it.
"""

from __future__ import annotations

import argparse

import torch

from fastadl.diagnostics.checks import iteration_tensors
from fastadl.diagnostics.float32_error import rel_error, roundings
from fastadl.diagnostics.workloads import NetSpec, iteration_batches, iteration_workload

SPEC = NetSpec(3, 4, 3, 3, 2, 33, 35)
CPU = torch.device("cpu")


def run(backend: str, state, dtype, batches, at_start: bool) -> dict[str, torch.Tensor]:
    net = SPEC.build(backend).to(dtype)
    net.load_state_dict(state)
    iteration, _ = iteration_workload(net, SPEC, CPU)
    (xa, ya), (xb, yb) = batches
    batches = ((xa.to(dtype), ya), (xb.to(dtype), yb))
    if at_start:  # the self-check's way
        return dict(zip(*iteration_tensors(iteration, batches, CPU), strict=True))
    out = iteration.run(batches, 0, iteration.w_lr, arch=True)
    adam = iteration.architect.optimizer
    grads = {f"α/β-step gradient {n}": adam.state[p]["exp_avg"] for n, p in
             zip(("alphas", "betas"), iteration.arch_params, strict=True)}  # fmt: skip
    return {"α/β-step loss": out["arch_loss"], **grads}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--roundings", type=int, default=4, help="random roundings (default 4)")
    p.add_argument("--alpha-at-start", action="store_true",
                   help="the α/β step at the weights before the weight step")  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = SPEC.build("reference")
    state64 = {k: v.double() if v.is_floating_point() else v for k, v in base.state_dict().items()}
    (xa, ya), (xb, yb) = iteration_batches(SPEC, CPU)
    batches64 = ((xa.double(), ya), (xb.double(), yb))
    want = run("reference", state64, torch.float64, batches64, args.alpha_at_start)
    keys = ["α/β-step loss", "α/β-step gradient alphas", "α/β-step gradient betas"]
    for i, (state, x) in enumerate(roundings(state64, batches64[0][0], args.roundings, 1000)):
        batches = ((x, ya), (xb.float(), yb))
        got = {b: run(b, state, torch.float32, batches, args.alpha_at_start)
               for b in ("reference", "auto")}  # fmt: skip
        print(f"rounding {i}: " + " | ".join(
            f"{k.split()[-1]}: reference {rel_error(got['reference'][k], want[k].double()):.1e}, "
            f"cell path {rel_error(got['auto'][k], want[k].double()):.1e}" for k in keys))  # fmt: skip


if __name__ == "__main__":
    main()
