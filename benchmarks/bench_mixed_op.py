"""One mixed-op edge, forward + backward, per backend side by side (one group per trellis level).

    pytest benchmarks/bench_mixed_op.py --benchmark-only            # pytest-benchmark tables
    python benchmarks/bench_mixed_op.py [--threads N] [--reps R]    # ratios to `reference`

The paper's search setting (docs/METHOD.md §2): batch N = 2 of 321×321 crops, F = 8,
so an edge at level s has C = 8·s/4 channels on the crop halved log2(s) times: 8×81×81,
16×41×41, 32×21×21, 64×11×11. BatchNorm in training mode, mixing weights softmax(α) with α
requiring grad, a fixed upstream gradient. `auto` is what a user gets (fused on CPU, triton on
CUDA); `triton` needs CUDA here (the interpreter is for tests, not timing) and skips on CPU.

The script times the backends interleaved (each repetition runs every backend once, in turn) and
reports medians, because a shared machine drifts: docs/PERFORMANCE.md has the recorded figures.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from fastadl import PRIMITIVES, MixedOp
from fastadl.diagnostics.timing import interleaved_medians

LEVELS = {  # label → (N, C, H, W)
    "s4 2x8x81x81": (2, 8, 81, 81),
    "s8 2x16x41x41": (2, 16, 41, 41),
    "s16 2x32x21x21": (2, 32, 21, 21),
    "s32 2x64x11x11": (2, 64, 11, 11),
}
BACKENDS = ("reference", "fused", "auto", "triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make_step(shape: tuple[int, int, int, int], backend: str, device: str = DEVICE):
    """A closure running one edge's forward + backward (parameter grads reset, not summed)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    op = MixedOp(shape[1], backend=backend).to(device).train()
    x = torch.randn(shape, generator=gen).to(device).requires_grad_()
    alpha = (1e-3 * torch.randn(len(PRIMITIVES), generator=gen)).to(device).requires_grad_()
    g = torch.randn(shape, generator=gen).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step() -> None:
        op.zero_grad(set_to_none=True)
        x.grad = alpha.grad = None
        op(x, alpha.softmax(-1)).backward(g)
        sync()

    return step


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level", LEVELS)
def test_mixed_op_forward_backward(benchmark, level, backend):
    if backend == "triton" and DEVICE != "cuda":
        pytest.skip("the triton backend is timed on CUDA only (CPU runs it interpreted)")
    benchmark.group = f"mixed_op fwd+bwd {level}"
    benchmark.extra_info["threads"] = torch.get_num_threads()
    step = make_step(LEVELS[level], backend)
    step()  # warm-up: oneDNN primitive caches, Triton autotuning
    benchmark(step)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--reps", type=int, default=60, help="repetitions per backend and level")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = [b for b in BACKENDS if b != "triton" or DEVICE == "cuda"]
    print(
        f"device={DEVICE} threads={torch.get_num_threads()} torch={torch.__version__} reps={args.reps}"
    )
    print(f"{'level':<16}" + "".join(f"{b:>12}" for b in backends) + "   speed-up vs reference")
    for level, shape in LEVELS.items():
        med = interleaved_medians({b: make_step(shape, b) for b in backends}, args.reps)
        ratios = "  ".join(f"{b} {med['reference'] / med[b]:.2f}x" for b in backends[1:])
        print(
            f"{level:<16}" + "".join(f"{med[b] * 1e3:10.2f}ms" for b in backends) + "   " + ratios
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
