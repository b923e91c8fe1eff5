"""A float32 computation's error from float64, measured over random roundings (issue 23).

In an ill-conditioned network (BatchNorms over a few pixels, peaked softmaxes) one float32
run's error in a given gradient is mostly luck: which way each rounding went. Two equally
accurate float32 implementations then differ tensor by tensor by large factors, so comparing
one run of each says little. Rounding the same float64 network and input to float32 in K
different but equally valid ways gives K independent samples of each implementation's error;
their root mean square is a per-tensor accuracy that two implementations can be compared on.

A random rounding moves each float64 value by a uniform draw of ±half a float32 ulp before
rounding to nearest, so it lands on one of the two float32 neighbours of the value (within one
ulp of it), the nearer one more often.

    errs = [named_errors(net32(state), x, upstream, want) for state, x in roundings(state64, x64, 8, 0)]
    per_tensor = rms_errors(errs)
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn


def random_rounding(t: Tensor, generator: torch.Generator) -> Tensor:
    """float64 tensor → float32 tensor, each value rounded to a random float32 within one ulp
    (non-floating tensors, e.g. BatchNorm's step counters, are returned unchanged)."""
    if not t.is_floating_point():
        return t
    nearest = t.float().abs()
    ulp = (torch.nextafter(nearest, torch.tensor(math.inf)) - nearest).double()
    noise = torch.rand(t.shape, generator=generator, dtype=torch.float64) - 0.5
    return (t + noise * ulp).float()


def roundings(
    state64: dict[str, Tensor], x64: Tensor, count: int, seed: int
) -> Iterator[tuple[dict[str, Tensor], Tensor]]:
    """``count`` random roundings of a float64 state_dict and input: (float32 state, x)."""
    for k in range(count):
        gen = torch.Generator().manual_seed(seed + k)
        state = {name: random_rounding(v, gen) for name, v in state64.items()}
        yield state, random_rounding(x64, gen)


def named_outputs_and_grads(net: nn.Module, x: Tensor, upstream: Tensor) -> dict[str, Tensor]:
    """{"output", "input", every parameter's name} → the output and dL/d(input, parameter)
    for dL/d output = ``upstream`` (cast to the output's dtype)."""
    x = x.clone().requires_grad_()
    out = net(x)
    names, params = zip(*net.named_parameters(), strict=True)
    grads = torch.autograd.grad(out, [x, *params], upstream.to(out.dtype))
    return {"output": out.detach(), "input": grads[0], **dict(zip(names, grads[1:], strict=True))}


def rel_error(got: Tensor, want: Tensor, min_scale: float = 0.0) -> float:
    """max |got − want| / max |want|, the scale at least ``min_scale`` (the absolute error
    where the scale is 0)."""
    scale = max(want.abs().max().item(), min_scale)
    err = (got.double() - want.double()).abs().max().item()
    return err / scale if scale > 0 else err


def named_errors(
    net: nn.Module, x: Tensor, upstream: Tensor, want: dict[str, Tensor]
) -> dict[str, float]:
    """Each tensor's rel_error from ``want`` (named_outputs_and_grads of the float64 network)."""
    got = named_outputs_and_grads(net, x, upstream)
    return {name: rel_error(t, want[name]) for name, t in got.items()}


def rms_errors(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per tensor, the root mean square of its errors over the runs."""
    return {name: math.sqrt(sum(r[name] ** 2 for r in runs) / len(runs)) for name in runs[0]}
