"""Running a network at one fixed input size, whatever the image's size: the rule an exported
model package follows (the native runner, native/segment.cpp, does the same steps in C++).

**Decision** (the issue leaves the rule open): an image that fits inside the (H, W) input is
used at its own scale and padded bottom/right with zeros, i.e. the mean colour after
normalisation; a larger one is first scaled down to fit, keeping its aspect ratio
(antialiased bilinear, sides rounded half up). Upscaling a small image would change the
pixel scale the network was trained at, so it is never done. The logits of the valid region
are cropped and, if the image was scaled, resized bilinearly back to the image's size, as
MultiScaleInference does for its scales. An image of exactly the input size therefore goes
through unchanged, and its label map is the one ``python -m fastadl.predict`` gives without
``--size``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

RESIZE_RULE = "fit-pad"  # the rule's name in an exported package's metadata


def fitted_size(h: int, w: int, H: int, W: int) -> tuple[int, int]:
    """The size an (h, w) image takes inside an (H, W) input: itself if it fits, else scaled
    down to fit with its aspect ratio kept (native/segment.cpp::fitted_size)."""
    if h <= H and w <= W:
        return h, w
    scale = min(H / h, W / w)
    return (
        min(H, max(1, math.floor(h * scale + 0.5))),
        min(W, max(1, math.floor(w * scale + 0.5))),
    )


class FixedSizeInference(nn.Module):
    """``model`` run at one input size: x (N, 3, h, w) normalised → logits (N, K, h, w)."""

    def __init__(self, model: nn.Module, size: tuple[int, int]):
        super().__init__()
        self.model = model
        self.size = (int(size[0]), int(size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        H, W = self.size
        fh, fw = fitted_size(h, w, H, W)
        if (fh, fw) != (h, w):
            x = F.interpolate(x, (fh, fw), mode="bilinear", antialias=True)
        x = F.pad(x, (0, W - fw, 0, H - fh), value=0.0)
        logits = self.model(x)[..., :fh, :fw]
        if (fh, fw) != (h, w):
            logits = F.interpolate(logits.float(), (h, w), mode="bilinear")
        return logits
