"""Does a fast path compute the reference's function? Outputs and gradients of one run, and
their comparison with float32 or bfloat16 tolerances.

Used by the `auto` backend's Triton smoke check (fastadl/ops/triton/check.py) and by
``python -m fastadl.selfcheck``; imports nothing from fastadl, so any layer may use it.

Tolerances (``agree``):
- float32: elementwise |a − b| ≤ RTOL_FP32·|b| + ATOL_FP32·max(1, max|b|), the absolute part
  scaled by the tensor's largest magnitude: backends sum the same products in different
  orders, and a gradient through several BatchNorms has entries near zero beside large ones.
  The floor of 1 is the scale of the terms such tensors are sums of (activations out of a
  BatchNorm, an upstream gradient drawn from N(0, 1)): a tensor that is zero in exact
  arithmetic (a running mean of BN'd activations, the gradient of a BN scale feeding another
  BN) holds ~1e-8 of rounding noise, which is agreement, not a mismatch. The project's tests
  use the same convention.
- bfloat16 (autocast): bf16 rounding is part of the function, so a backend is compared with the
  float32 reference and judged against the reference's own bf16 error: the output's relative
  error (‖a − ref32‖ / max(‖ref32‖, √numel), capped at 1), and the root mean square of all
  tensors' relative errors, must each stay within BF16_SLACK × the reference's plus
  BF16_FLOOR. Aggregated, because a bf16
  network gradient is noisy tensor by tensor (the reference's own errors range over 0.01–1 in
  a small SuperNet); a kernel that mishandles bf16 moves the aggregate by orders of magnitude,
  and the float32 check is the exact one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

RTOL_FP32 = 1e-4
ATOL_FP32 = 5e-5
BF16_SLACK = 2.0
BF16_FLOOR = 1e-2


@contextlib.contextmanager
def exact_fp32():
    """No TF32 in matmuls and cuDNN convolutions (torch enables it for cuDNN by default): a
    float32 comparison on CUDA would otherwise measure TF32's 10-bit mantissa."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def outputs_and_grads(
    run: Callable[[], Tensor], wrt: Sequence[Tensor], seed: int = 1
) -> list[Tensor | None]:
    """[output, ∂L/∂t for t in wrt] with L = ⟨output, g⟩ for a fixed random g (float32).

    Gradients autograd does not reach are None. Everything is returned detached, in float32.
    """
    out = run()
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(out.shape, generator=gen).to(out.device, out.dtype)
    grads = torch.autograd.grad(out, list(wrt), g, allow_unused=True)
    return [t if t is None else t.detach().float() for t in (out, *grads)]


@dataclass(frozen=True)
class Agreement:
    """The worst tensor of a comparison: ``error`` ≤ 1 means within tolerance."""

    error: float  # worst normalised error over all tensors (tolerance = 1)
    worst: str  # the tensor it came from
    detail: str  # a readable measure for the report, e.g. "max |Δ| 3.1e-06"

    @property
    def ok(self) -> bool:
        return math.isfinite(self.error) and self.error <= 1.0


def _fp32_error(a: Tensor, b: Tensor) -> tuple[float, str]:
    diff = (a - b).abs()
    bound = RTOL_FP32 * b.abs() + ATOL_FP32 * b.abs().max().clamp_min(1.0)
    if not bool(torch.isfinite(a).all()):
        return math.inf, "non-finite values"
    over = diff / bound.clamp_min(torch.finfo(torch.float32).tiny)
    return float(over.max()), f"max |Δ| {float(diff.max()):.2g}"


def _relative(a: Tensor, b: Tensor) -> float:
    """‖a − b‖ / ‖b‖, the norm at least √numel (an O(1) tensor's), capped at 1: 100 % off is as
    wrong as a tensor can be, so one garbage tensor cannot swamp the rms."""
    if not bool(torch.isfinite(a).all()):
        return 1.0
    scale = b.norm().clamp_min(math.sqrt(max(b.numel(), 1)))
    return min(float((a - b).norm() / scale), 1.0)


def _rms(values: Sequence[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / max(len(values), 1))


def agree(
    got: Sequence[Tensor | None],
    want: Sequence[Tensor | None],
    names: Sequence[str],
    reference_low: Sequence[Tensor | None] | None = None,
) -> Agreement:
    """Compare a fast path's tensors ``got`` with the float32 reference's ``want`` (output first).

    reference_low: the reference's own tensors under bf16 autocast; given, ``got`` is judged by
    the bfloat16 rule, else by the float32 one (module docstring). A tensor the reference does
    not reach (None) must be None or zero in ``got`` too.
    """
    low = reference_low if reference_low is not None else [None] * len(want)
    worst = Agreement(0.0, "", "")
    rel_got, rel_ref = [], []
    for name, a, b, r in zip(names, got, want, low, strict=True):
        err, detail = 0.0, ""
        if b is None:
            if a is not None and bool(a.abs().max() > 0):
                err, detail = math.inf, "gradient where the reference has none"
        elif a is None or a.shape != b.shape:
            err, detail = math.inf, "missing" if a is None else f"shape {tuple(a.shape)}"
        elif reference_low is None:
            err, detail = _fp32_error(a, b)
        else:
            rel_got.append(_relative(a, b))
            rel_ref.append(_relative(r, b))
        err = math.inf if math.isnan(err) else err
        if err > worst.error:
            worst = Agreement(err, name, detail)
    if rel_got:  # bf16: the output, then all tensors together
        for label, g, r in (
            (names[0], rel_got[0], rel_ref[0]),
            (f"all {len(rel_got)} tensors (rms)", _rms(rel_got), _rms(rel_ref)),
        ):
            err = g / (BF16_SLACK * r + BF16_FLOOR)
            err = math.inf if math.isnan(err) else err
            if err > worst.error or not worst.worst:
                worst = Agreement(err, label, f"rel {g:.2g} (reference bf16: {r:.2g})")
    return worst
