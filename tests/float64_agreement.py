"""Float32 agreement with the reference where float32 itself is ill-conditioned.

A network with BatchNorm over few values, or α/β far from uniform, amplifies rounding: two
float32 computations of the same function can differ by 1 % and both be right, and how far the
float32 reference lands from the exact result changes with the CPU (its oneDNN/MKL kernels sum
in other orders on other instruction sets). So the exact check is float64, and a fast path's
float32 result must be about as close to float64 as the float32 reference's is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fastadl.diagnostics.float32_error import rel_error, rms_errors, roundings


def rel_errors(got, want, min_scale: float = 1e-3) -> list[float]:
    """Per tensor: the largest absolute difference over the largest magnitude of ``want``, or over
    ``min_scale`` where that is smaller (a BatchNorm's running mean over an all-zero map is 0 in
    float64 and a few 1e-9 in float32; min_scale = 1 makes the errors of tensors below 1
    absolute, as the suite's float32 tolerances are)."""
    return [rel_error(a, b, min_scale) for a, b in zip(got, want, strict=True)]


def assert_errors_within(
    e_fast, e_ref, names=None, factor: float = 3.0, floor: float = 0.0
) -> None:
    """Every tensor's error ``e_fast[i]`` within factor × ``e_ref[i]`` plus ``floor``."""
    for i, (ef, er) in enumerate(zip(e_fast, e_ref, strict=True)):
        name = names[i] if names else f"tensor #{i}"
        assert ef <= factor * er + floor, (
            f"{name}: fast path {ef:.2e} vs float32 reference {er:.2e}"
        )


def assert_as_close_to_float64(
    fast32, ref32, ref64, names=None, factor: float = 4.0, floor: float = 1e-5,
    min_scale: float = 1e-3,
) -> None:  # fmt: skip
    """One run each: every tensor of ``fast32`` within factor × the float32 reference's error
    (rel_errors) from ``ref64``, plus ``floor``. One run's error is partly luck (which way each
    rounding went), hence the factor 4 and the floor; rounded_rms_errors below takes the luck
    out, and the gradient checks of the cell path use it with 3×."""
    e_fast, e_ref = rel_errors(fast32, ref64, min_scale), rel_errors(ref32, ref64, min_scale)
    assert_errors_within(e_fast, e_ref, names, factor, floor)


# Random roundings per path in rounded_rms_errors. With 8, the float32 reference against a
# second, independent set of 8 roundings of itself reached 2.4× (B = 3) and 2.9× (B = 5) on its
# worst tensor in tests/ops/cell/test_cell_fast_path.py's supernets, the cell path 1.8×
# (docs/TESTING.md, 2026-12-07): 3× holds for an equally accurate implementation, barely.
ROUNDINGS = 8
# two float32 ulps of 1.0: where the reference's error is 0 (a value it gets exactly), a fast
# path may still sum in another order
ULP_FLOOR = 2 * 2.0**-24


def rounded_rms_errors(
    template32: nn.Module, state64: dict, x64: torch.Tensor, want, compute,
    count: int = ROUNDINGS, min_scale: float = 1e-3, seed: int = 1000,
) -> list[float]:  # fmt: skip
    """Per tensor of ``compute(net, x)`` (a list in ``want``'s order), the root mean square over
    ``count`` random roundings of the float64 ``state64`` and ``x64`` to float32
    (fastadl/diagnostics/float32_error.py) of its rel_errors from ``want``; each rounding is
    loaded into a copy of ``template32`` (a float32 module of the backend under test);
    ``seed`` picks the set of roundings."""
    runs = []
    for state, x in roundings(state64, x64, count, seed):
        net = copy.deepcopy(template32)
        net.load_state_dict(state)
        runs.append(rel_errors(compute(net, x), want, min_scale))
    per_tensor = rms_errors([dict(enumerate(r)) for r in runs])
    return [per_tensor[i] for i in range(len(want))]


# Where a float32 value lies within rounding of a kink (a ReLU input near 0, a max-pool window
# whose two largest values nearly tie), float32 and float64 may take different sides of it: the
# gradient then jumps, and which float32 computation lands on float64's side depends on the
# CPU's summation orders (the float32 reference was 0.46 % from float64 in α's gradient on one
# instruction set, the fast path on the other, both 4e-7 on the side float64 took). Such a point
# has no float32-accurate gradient, so the gradient checks evaluate at points that are far from
# every kink relative to float32's error there: about 1e-6 of a tensor's largest magnitude at
# the ReLU inputs of the suite's networks, whence KINK_MARGIN.
KINK_MARGIN = 4e-6


def _pool_gaps(x: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:
    """Per window of ``pool`` over x: largest minus second largest value (exact ties excluded:
    they come from identical computations, equal in every precision, and every implementation
    breaks them alike)."""
    k, s, p = (pool.kernel_size, pool.stride, pool.padding)
    k, s, p = ((v, v) if isinstance(v, int) else v for v in (k, s, p))
    xp = F.pad(x, (p[1], p[1], p[0], p[0]), value=float("-inf"))
    windows = xp.unfold(2, k[0], s[0]).unfold(3, k[1], s[1]).flatten(-2)
    top = windows.topk(2, dim=-1).values
    gaps = top[..., 0] - top[..., 1]
    return gaps[gaps > 0]


def kink_distances(net: nn.Module, x: torch.Tensor) -> list[float]:
    """For every nn.ReLU and nn.MaxPool2d call of ``net(x)``: its input's smallest distance
    from a kink relative to the input's largest magnitude. Runs a copy of ``net``, so that the
    BatchNorm running statistics of ``net`` stay as they are."""
    net = copy.deepcopy(net)
    found: list[float] = []

    def hook(module, inputs, _output):
        x = inputs[0].detach()
        scale = x.abs().max().clamp_min(1e-30)
        if isinstance(module, nn.ReLU):
            found.append((x.abs().min() / scale).item())
        else:
            gaps = _pool_gaps(x, module)
            found.append((gaps.min() / scale).item() if gaps.numel() else 1.0)

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, nn.ReLU | nn.MaxPool2d)
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return found


def first_well_posed(net64: nn.Module, make_input: Callable[[int], torch.Tensor], seeds) -> int:
    """The first seed whose input keeps the float64 ``net64``'s forward KINK_MARGIN away from
    every kink (decided in float64, so the same seed on every machine)."""
    tried = []
    for seed in seeds:
        x = make_input(seed)
        margin = min(kink_distances(net64, x), default=1.0)
        if margin >= KINK_MARGIN:
            return seed
        tried.append(f"{seed}: {margin:.1e}")
    raise AssertionError(
        f"no input keeps the network {KINK_MARGIN:.0e} from a kink ({', '.join(tried)}): use "
        "smaller inputs or more seeds"
    )
