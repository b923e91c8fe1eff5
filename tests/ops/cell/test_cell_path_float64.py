"""The cell path in float32 is as close to float64 as the float32 reference is, tensor by
tensor, on a whole supernet at the size where the sums are long (issue 23).

A search network (L = 4, F = 2, B = 5) on 49×53 images of 2, α and β drawn from N(0, 1):
the output and every gradient (input, each weight, α, β: 3223 tensors) of the cell path and of
the reference, each error measured as the largest absolute difference from float64 over the
float64 tensor's largest magnitude. scripts/test_avx2.sh runs this (marker ``numerics``) with
every AVX2 code path forced.

This network is ill-conditioned in float32 (BatchNorms over 2×2 to 13×14 maps of 2 images):
in one float32 run, which implementation lands closer on a given tensor is mostly luck (one
run each, the cell path and the reference were 13-56× apart on their worst tensor for three
networks; ATen's own AVX2 and AVX-512 references up to 6×). So each path's error per tensor is
the root mean square over ROUNDINGS random roundings of the same float64 network and input to
float32 (fastadl/diagnostics/float32_error.py), and the cell path's must be within FACTOR of
the reference's for every tensor. The reference against a second, independent set of 12
roundings of itself reaches 2.0-2.5× on its worst tensor (docs/TESTING.md): 3× is a bound an
equally accurate implementation meets, with little room, and a systematic loss shows (the
float GEMM sums that made the 1×1 weight gradients 1.6× and β's up to 5× less accurate on
average until 2026-12-07 put this test's worst tensor at 3.7×).
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from fastadl import SuperNet
from fastadl.diagnostics.float32_error import (
    named_errors,
    named_outputs_and_grads,
    rms_errors,
    roundings,
)

pytestmark = [pytest.mark.numerics, pytest.mark.usefixtures("one_thread")]

FACTOR = 3.0
ROUNDINGS = 12
# a few float32 ulps of 1.0: where the reference's error is 0 (a gradient it gets exactly),
# the fast path may still sum in another order
FLOOR = 2 * 2.0**-24

X = torch.randn(2, 3, 49, 53, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
UPSTREAM = torch.randn(2, 5, 49, 53, generator=torch.Generator().manual_seed(1),
                       dtype=torch.float64)  # fmt: skip


def supernet(backend: str) -> SuperNet:
    return SuperNet(5, layers=4, filter_multiplier=2, block_multiplier=5, backend=backend)


@functools.cache
def reference() -> tuple[list, dict[str, torch.Tensor], dict[str, float]]:
    """(the float32 roundings (state, x), float64 outputs and gradients, the float32
    reference's RMS error per tensor)."""
    torch.manual_seed(0)
    ref64 = supernet("reference")
    with torch.no_grad():
        ref64.alphas.normal_(0, 1)
        ref64.betas.normal_(0, 1)
    ref64 = ref64.double().train()
    state64 = copy.deepcopy(ref64.state_dict())  # before its forward moves the statistics
    want = named_outputs_and_grads(ref64, X, UPSTREAM)
    rounded = list(roundings(state64, X, ROUNDINGS, seed=1000))
    return (
        rounded,
        want,
        rms_errors([errors(supernet("reference"), s, x, want) for s, x in rounded]),
    )


def errors(net: SuperNet, state, x, want) -> dict[str, float]:
    net.load_state_dict(state)
    return named_errors(net.train(), x, UPSTREAM, want)


@pytest.mark.parametrize("cpu_kernels", ["C++ kernels", "no C++ kernels"], indirect=True)
def test_cell_path_float32_is_as_close_to_float64_as_the_reference(cpu_kernels):
    rounded, want, e_ref = reference()
    e_fast = rms_errors([errors(supernet("auto"), s, x, want) for s, x in rounded])
    assert e_fast.keys() == e_ref.keys() and len(e_ref) > 3000
    ratio = {k: e_fast[k] / max(e_ref[k], FLOOR) for k in e_ref}
    worst = sorted(ratio, key=ratio.get, reverse=True)[:5]
    print("worst tensors (cell path / reference):",
          ", ".join(f"{k} {ratio[k]:.2f}" for k in worst))  # fmt: skip
    over = [k for k in e_ref if e_fast[k] > FACTOR * e_ref[k] + FLOOR]
    assert not over, "\n".join(
        f"{k}: cell path {e_fast[k]:.2e} vs float32 reference {e_ref[k]:.2e} (RMS over "
        f"{ROUNDINGS} roundings of the error from float64)"
        for k in over
    )
