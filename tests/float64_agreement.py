"""Float32 agreement with the reference where float32 itself is ill-conditioned.

A network with BatchNorm over few values, or α/β far from uniform, amplifies rounding: two
float32 computations of the same function can differ by 1 % and both be right, and how far the
float32 reference lands from the exact result changes with the CPU (its oneDNN/MKL kernels sum
in other orders on other instruction sets). So the exact check is float64, and a fast path's
float32 result must be about as close to float64 as the float32 reference's is.
"""

from __future__ import annotations


def rel_errors(got, want, min_scale: float = 1e-3) -> list[float]:
    """Per tensor: the largest absolute difference over the largest magnitude of ``want``, or over
    ``min_scale`` where that is smaller (a BatchNorm's running mean over an all-zero map is 0 in
    float64 and a few 1e-9 in float32; min_scale = 1 makes the errors of tensors below 1
    absolute, as the suite's float32 tolerances are)."""
    return [
        ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(min_scale)).item()
        for a, b in zip(got, want, strict=True)
    ]


def assert_as_close_to_float64(
    fast32, ref32, ref64, names=None, factor: float = 4.0, floor: float = 1e-5,
    min_scale: float = 1e-3,
) -> None:  # fmt: skip
    """Every tensor of ``fast32`` within factor × the float32 reference's error (rel_errors) from
    ``ref64``, plus ``floor`` (a few float32 ulps that move with summation orders)."""
    e_fast, e_ref = rel_errors(fast32, ref64, min_scale), rel_errors(ref32, ref64, min_scale)
    for i, (ef, er) in enumerate(zip(e_fast, e_ref, strict=True)):
        name = names[i] if names else f"tensor #{i}"
        assert ef <= factor * er + floor, (
            f"{name}: fast path {ef:.2e} vs float32 reference {er:.2e}"
        )
