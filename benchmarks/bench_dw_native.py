"""The C++ depthwise kernels (fastadl/ops/cell/cpu/dwconv.py) against ATen on the search's shapes.

    python benchmarks/bench_dw_native.py               # 1 and 2 threads for ATen, float32
    python benchmarks/bench_dw_native.py --threads 1

Per shape (B, G, H, W, k, dilation; G channels, x not repeated) the forward conv and the weight
gradient, µs per call (best of 3 batches), the native kernels always on one thread: ATen's
forward is ``F.conv2d`` (oneDNN), its weight gradient the cropped-kernel routes of
fastadl/ops/cell/cpu/dw_crop.py (the best of ``convolution_backward``, the swapped conv and the window
product for the shape). The shapes are those of the anchor search (64² crops: 16² down to 2²
maps) and of 256² crops (32², 64²). docs/PERFORMANCE.md ("C++ depthwise kernels") has the
recorded figures and the thresholds chosen from them.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import fastadl.ops.cell.cpu.dw_crop as dw_crop
from fastadl.kernels.cpu import accepts
from fastadl.ops.cell.cpu.dwconv import dw_conv
from fastadl.ops.cell.cpu.dwconv import dw_weight_grad_cpp as dw_weight_grad

SHAPES = [  # B, G, H, W, k, dilation
    (2, 1280, 2, 2, 3, 1), (4, 1280, 2, 2, 3, 1), (6, 256, 4, 4, 5, 1), (6, 640, 4, 4, 5, 1),
    (6, 96, 8, 8, 5, 1), (6, 320, 8, 8, 5, 1), (4, 8, 16, 16, 5, 2), (4, 24, 16, 16, 5, 1),
    (4, 40, 16, 16, 5, 2), (4, 120, 16, 16, 5, 1), (4, 16, 32, 32, 5, 2), (4, 40, 32, 32, 5, 1),
    (4, 8, 64, 64, 5, 1), (4, 24, 64, 64, 5, 2),
]  # fmt: skip


def timed(fn) -> float:
    """µs per call, best of 3 batches of about 50 ms."""
    fn()
    t = time.perf_counter()
    fn()
    n = max(5, min(300, int(0.05 / max(time.perf_counter() - t, 1e-7))))
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def aten_weight_grad(g, x, k, d):
    saved = dw_crop.NATIVE_WGRAD_MAX_PIXELS
    dw_crop.NATIVE_WGRAD_MAX_PIXELS = -1
    try:
        return dw_crop.dw_weight_grad_cropped(g, x, k, d)
    finally:
        dw_crop.NATIVE_WGRAD_MAX_PIXELS = saved


def shape_row(B: int, G: int, H: int, W: int, k: int, d: int, threads: list[int]) -> str:
    """One printed line: native, then ATen per thread count, forward | weight gradient."""
    cl = torch.channels_last
    x = torch.randn(B, G, H, W).contiguous(memory_format=cl)
    g = torch.randn(B, G, H, W).contiguous(memory_format=cl)
    w = torch.randn(G, 1, k, k)
    p = (k - 1) // 2 * d
    torch.set_num_threads(1)
    fwd = [timed(lambda: dw_conv(x, w, d))]
    wg = [timed(lambda: dw_weight_grad(g, x, k, d))]
    for n in threads:
        torch.set_num_threads(n)
        fwd.append(timed(lambda: F.conv2d(x, w, None, 1, p, d, G)))
        wg.append(timed(lambda: aten_weight_grad(g, x, k, d)))
    return (f"{str((B, G, H, W, k, d)):24} forward " + " ".join(f"{t:7.0f}" for t in fwd)
            + " | weight grad " + " ".join(f"{t:7.0f}" for t in wg))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="ATen's intra-op thread counts to compare with (default: 1 2)")  # fmt: skip
    args = ap.parse_args()
    if not accepts(torch.zeros(1)):
        raise SystemExit("bench_dw_native: the C++ kernels did not build (see the warning)")
    head = " ".join(f"aten@{n}" for n in args.threads)
    print(f"{'B, G, H, W, k, d':24} forward µs: native {head} | weight grad µs: native {head}")
    for shape in SHAPES:
        print(shape_row(*shape, args.threads), flush=True)


if __name__ == "__main__":
    main()
