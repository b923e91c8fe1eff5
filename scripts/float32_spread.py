"""How far the float32 reference's own error moves between evaluations that differ only in
rounding, and the cell path's per-tensor error against that spread (issue 23, docs/TESTING.md).

    python scripts/float32_spread.py --seed 3

The L = 4 supernet of tests/ops/cell/test_cell_path_float64.py (α and β from N(0, 1), 49×53
images of 2) is run in float32 four ways that compute the same function: as is, with the batch
order reversed, in channels-last memory, and both. Per tensor (output, input and every
parameter's gradient), each run's error is its largest difference from float64 over the
float64 tensor's largest magnitude. Printed: the worst single-run ratio cell path / reference
(what a per-tensor test compares), the worst ratio of the two paths' RMS errors over the four
runs, how many tensors exceed 3×, and the geometric mean ratio per kind of tensor.
"""

from __future__ import annotations

import argparse
import collections
import copy
import math
import re

import torch

from fastadl import SuperNet

CLASSES = 5
VARIANTS = ((False, False), (True, False), (False, True), (True, True))  # (reversed, cl)


def supernet(backend: str, seed: int) -> SuperNet:
    torch.manual_seed(seed)
    net = SuperNet(CLASSES, layers=4, filter_multiplier=2, block_multiplier=5, backend=backend)
    with torch.no_grad():
        net.alphas.normal_(0, 1)
        net.betas.normal_(0, 1)
    return net.double()


def outputs_and_grads(net, x, upstream, reverse: bool, channels_last: bool) -> dict:
    """Output and dL/d(input, parameters) for dL/d output = ``upstream``, by name, computed in
    one of the equivalent ways (batch reversed and/or channels-last), returned in the plain
    batch order."""
    net = copy.deepcopy(net)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = (x.flip(0) if reverse else x).contiguous(memory_format=fmt)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    x.requires_grad_()
    out = net(x)
    g = (upstream.flip(0) if reverse else upstream).to(out.dtype).contiguous(memory_format=fmt)
    names, params = zip(*net.named_parameters(), strict=True)
    grads = torch.autograd.grad(out, [x, *params], g)
    found = {"output": out.detach(), "input": grads[0], **dict(zip(names, grads[1:], strict=True))}
    if reverse:
        found["output"], found["input"] = found["output"].flip(0), found["input"].flip(0)
    return found


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    scale = want.abs().max().item()
    err = (got.double() - want).abs().max().item()
    return err / scale if scale > 0 else err


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="supernet seed (the test uses 0)")
    args = p.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(2, 3, 49, 53, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref64 = supernet("reference", args.seed).train()
    upstream = torch.randn((2, CLASSES, 49, 53), generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)  # fmt: skip
    want = outputs_and_grads(ref64, x, upstream, False, False)
    ref32 = copy.deepcopy(ref64).float()
    fast32 = SuperNet(CLASSES, layers=4, filter_multiplier=2, block_multiplier=5, backend="auto")
    fast32.load_state_dict(ref32.state_dict())
    errors: dict[str, list[dict]] = {"reference": [], "cell path": []}
    for reverse, channels_last in VARIANTS:
        for label, net in (("reference", ref32), ("cell path", fast32)):
            got = outputs_and_grads(net, x.float(), upstream, reverse, channels_last)
            errors[label].append({k: rel_error(v, want[k]) for k, v in got.items()})
    names = list(errors["reference"][0])

    def rms(label: str, name: str) -> float:
        runs = errors[label]
        return math.sqrt(sum(e[name] ** 2 for e in runs) / len(runs))

    tiny = 1e-12
    single = [errors["cell path"][0][n] / max(errors["reference"][0][n], tiny) for n in names]
    spread = [rms("cell path", n) / max(rms("reference", n), tiny) for n in names]
    print(f"seed {args.seed}: {len(names)} tensors")
    print(f"  one run each: worst ratio {max(single):.1f}, over 3x: {sum(r > 3 for r in single)}")
    print(f"  RMS over {len(VARIANTS)} runs: worst ratio {max(spread):.2f}, "
          f"over 3x: {sum(r > 3 for r in spread)}")  # fmt: skip
    kinds = collections.defaultdict(list)
    for name, ratio in zip(names, spread, strict=True):
        kind = re.sub(r"edges\.\d+", "e", re.sub(r"layer\d+_level\d+", "L", name))
        kinds[kind].append(math.log(max(ratio, tiny)))
    worst = sorted(kinds.items(), key=lambda kv: -sum(kv[1]) / len(kv[1]))[:8]
    print("  geometric mean ratio per kind (the 8 highest):")
    for kind, logs in worst:
        print(f"    {kind}: {math.exp(sum(logs) / len(logs)):.2f} over {len(logs)}")


if __name__ == "__main__":
    main()
