"""Several depthwise convs of one stage as one call: runs of kernels merged into a union kernel.

A fan-out group runs one depthwise conv per branch kind (3×3 and 5×5, dilation 1 and 2) over the
state repeated for its E edges. On small maps a conv call costs 40-100 µs whatever the work,
and the cropped kernels (fastadl/ops/cell/cpu/dw_crop.py) overlap: a run of consecutive kinds whose tap
offsets all lie in one small kernel becomes one conv on the state repeated n·E times, each kind's
taps placed in the union kernel and the rest zero. The output is the same, the arithmetic grows
(a 3×3 in a 5×5 does 25 products for 9), so runs are merged only on maps of at most
MERGE_MAX_PIXELS pixels and into at most MERGE_MAX_TAPS taps.

Kernels are (G, 1, k, k) for G = n·E·C channels in (kind, edge, channel) order; feature maps
are channels-last (B, G, H, W).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from fastadl.kernels.cpu import accepts
from fastadl.ops.cell.cpu.dw_crop import reach
from fastadl.ops.cell.cpu.dwconv import dw_conv

MERGE_MAX_PIXELS = 256  # 16×16: above it the arithmetic, not the call count, sets the time
MERGE_MAX_TAPS = 25
# Up to this many pixels (16×16) the C++ kernels (fastadl/ops/cell/cpu/dwconv.py) run the depthwise
# convs; on 32² and 64² maps oneDNN's are faster, more so on 2 threads (docs/PERFORMANCE.md,
# "C++ depthwise kernels").
NATIVE_MAX_PIXELS = 256


@dataclass(frozen=True)
class Placement:
    """Where one kind's cropped kernel sits in its run's union kernel."""

    k: int  # the kind's full kernel size
    rows: tuple[int, int, int]  # start, stop, step in the union kernel (and cropped extent)
    cols: tuple[int, int, int]
    full_rows: tuple[int, int]  # the same taps in the kind's full k×k kernel (start, stop)
    full_cols: tuple[int, int]
    step: int  # dilation of the kind / dilation of the union


@dataclass(frozen=True)
class ConvRun:
    lo: int  # kinds lo..hi-1 of the stage
    hi: int
    kh: int  # union kernel
    kw: int
    dilation: int
    places: tuple[Placement, ...]

    @property
    def pad(self) -> tuple[int, int]:
        return ((self.kh - 1) // 2 * self.dilation, (self.kw - 1) // 2 * self.dilation)

    @property
    def size(self) -> int:
        return self.hi - self.lo


def _offsets(k: int, d: int, H: int, W: int) -> tuple[int, int, int]:
    """(reach·d rows, reach·d cols, d) of a kind's cropped kernel on an H×W map."""
    return reach(k, d, H) * d, reach(k, d, W) * d, d


def _union(kinds: list[tuple[int, int]], H: int, W: int) -> ConvRun | None:
    """The run of ``kinds`` ((k, d) each) as one union kernel, or None if no common dilation."""
    offs = [_offsets(k, d, H, W) for k, d in kinds]
    used = [d for oh, ow, d in offs if oh or ow] or [1]
    du = min(used)
    if any(d % du for d in used):
        return None
    rh = max(oh for oh, _, _ in offs) // du
    rw = max(ow for _, ow, _ in offs) // du
    places = []
    for (k, d), (oh, ow, _) in zip(kinds, offs, strict=True):
        s = max(1, d // du)
        half = (k - 1) // 2
        th, tw = oh // d, ow // d  # taps kept on each side
        places.append(Placement(
            k, (rh - th * s, rh + th * s + 1, s), (rw - tw * s, rw + tw * s + 1, s),
            (half - th, half + th + 1), (half - tw, half + tw + 1), s,
        ))  # fmt: skip
    return ConvRun(0, len(kinds), 2 * rh + 1, 2 * rw + 1, du, tuple(places))


@functools.cache
def plan_runs(kinds: tuple[tuple[int, int], ...], H: int, W: int) -> tuple[ConvRun, ...]:
    """Consecutive runs covering ``kinds`` ((kernel, dilation) per kind, in stage order)."""
    merge = H * W <= MERGE_MAX_PIXELS
    runs, lo = [], 0
    while lo < len(kinds):
        hi = lo + 1
        while merge and hi < len(kinds):
            u = _union(list(kinds[lo : hi + 1]), H, W)
            if u is None or u.kh * u.kw > MERGE_MAX_TAPS:
                break
            hi += 1
        u = _union(list(kinds[lo:hi]), H, W)
        runs.append(ConvRun(lo, hi, u.kh, u.kw, u.dilation, u.places))
        lo = hi
    return tuple(runs)


def run_weight(run: ConvRun, ws: list[Tensor]) -> Tensor:
    """The union kernel (n·G, 1, kh, kw) of a run from its kinds' full kernels (G, 1, k, k)."""
    if run.size == 1:
        p = run.places[0]
        w = ws[run.lo]
        if (p.full_rows, p.full_cols) == ((0, p.k), (0, p.k)) and p.step == 1:
            return w
        return w[..., p.full_rows[0] : p.full_rows[1], p.full_cols[0] : p.full_cols[1]]
    G = ws[run.lo].shape[0]
    u = ws[run.lo].new_zeros(run.size * G, 1, run.kh, run.kw)
    for i, p in enumerate(run.places):
        u[i * G : (i + 1) * G, :, slice(*p.rows), slice(*p.cols)] = ws[run.lo + i][
            ..., p.full_rows[0] : p.full_rows[1], p.full_cols[0] : p.full_cols[1]
        ]
    return u


def run_forward(x: Tensor, w: Tensor, run: ConvRun) -> Tensor:
    """The run's depthwise conv with its union kernel w (K, 1, kh, kw) of x (B, Cx, H, W)
    channels-last, K = R·Cx: channel k reads x's channel k mod Cx (x repeated R times, as
    when every kind and edge of a stage reads the same state) → (B, K, H, W) channels-last."""
    B, Cx, H, W = x.shape
    K = w.shape[0]
    if H * W <= NATIVE_MAX_PIXELS and accepts(x) and run.kh * run.kw > 1:
        return dw_conv(x, w, run.dilation)  # reads the repeats in place
    if Cx != K:
        rows = x.permute(0, 2, 3, 1).unsqueeze(3).expand(B, H, W, K // Cx, Cx)
        x = rows.reshape(B, H, W, K).permute(0, 3, 1, 2)
    if run.kh == run.kw == 1:  # only the centre tap reaches the map: a per-channel scale
        return x * w.view(1, -1, 1, 1)
    return F.conv2d(x, w, None, 1, run.pad, run.dilation, K)


def run_input_grad(g: Tensor, w: Tensor, run: ConvRun) -> Tensor:
    """dL/dx of run_forward for dL/d out = g: the same conv with the kernel flipped."""
    if run.kh == run.kw == 1:
        return g * w.view(1, -1, 1, 1)
    if g.shape[2] * g.shape[3] <= NATIVE_MAX_PIXELS and accepts(g):
        return dw_conv(g, w, run.dilation, flip=True)
    return F.conv2d(g, w.flip((-2, -1)), None, 1, run.pad, run.dilation, g.shape[1])
