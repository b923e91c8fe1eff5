"""Joint image/mask transforms: normalisation, random scale + crop + flip, padded batching.

Images are resampled bilinearly and masks by nearest neighbour on the same pixel-centre grid
(the geometry of ``F.interpolate(..., align_corners=False)`` and ``mode="nearest-exact"``), so a
mask pixel always labels the image pixel at the same place. Scale and crop are done in one step
that only computes the crop window: scaling a 2048×1024 Cityscapes frame by 2 never materialises
the 4096×2048 image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# The label of pixels no loss or metric counts: unlabelled classes, crop padding, VOC borders.
IGNORE_INDEX = 255
# ImageNet statistics: the normalisation DeepLab-style pipelines use (shared/AUTO_DEEPLAB.md §6).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_MEAN = torch.tensor(MEAN).view(3, 1, 1) * 255.0
_STD = torch.tensor(STD).view(3, 1, 1) * 255.0


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """image uint8 (H, W, 3) → float32 (3, H, W) normalised; mask (H, W) → int64 (H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    return (x - _MEAN) / _STD, torch.from_numpy(np.ascontiguousarray(mask)).long()


def denormalize(image: torch.Tensor) -> np.ndarray:
    """Inverse of to_tensors for display: float (3, H, W) → uint8 (H, W, 3)."""
    x = image.detach().cpu().float() * _STD + _MEAN
    return x.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def _linear_taps(start: int, n: int, in_size: int, out_size: int):
    """Source taps and weights of output pixels start..start+n-1 of a bilinear resize
    in_size → out_size (pixel centres aligned, edges clamped: F.interpolate's rule)."""
    dst = torch.arange(start, start + n, dtype=torch.float64)
    src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    return i0, i1, (src - i0).float()


def _nearest_taps(start: int, n: int, in_size: int, out_size: int) -> torch.Tensor:
    """Source pixel of output pixels start..start+n-1: the one whose area holds the output
    pixel's centre, floor((dst + 0.5) · in / out), in exact integer arithmetic."""
    dst = torch.arange(start, start + n, dtype=torch.int64)
    return ((2 * dst + 1) * in_size // (2 * out_size)).clamp(max=in_size - 1)


def resize_crop(
    image: torch.Tensor,
    mask: torch.Tensor,
    size: tuple[int, int],
    top: int,
    left: int,
    crop: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize to ``size`` = (H', W'), then take the ``crop`` = (h, w) window at (top, left).

    image: (3, H, W) float, mask: (H, W) int64. Where the window runs past the resized image
    (it is smaller than the crop) the image is padded with 0 (the mean, after normalisation) and
    the mask with IGNORE_INDEX, on the bottom/right.
    """
    (_, H, W), (Hs, Ws), (ch, cw) = image.shape, size, crop
    nh, nw = max(0, min(ch, Hs - top)), max(0, min(cw, Ws - left))
    out = image.new_zeros(3, ch, cw)
    out_mask = mask.new_full((ch, cw), IGNORE_INDEX)
    if nh and nw:
        y0, y1, wy = _linear_taps(top, nh, H, Hs)
        x0, x1, wx = _linear_taps(left, nw, W, Ws)
        rows = torch.lerp(image[:, y0], image[:, y1], wy[:, None])
        out[:, :nh, :nw] = torch.lerp(rows[:, :, x0], rows[:, :, x1], wx)
        ny, nx = _nearest_taps(top, nh, H, Hs), _nearest_taps(left, nw, W, Ws)
        out_mask[:nh, :nw] = mask[ny][:, nx]
    return out, out_mask


@dataclass(frozen=True)
class TrainTransform:
    """Random scale in ``scale_range``, random ``crop_size`` crop (None: keep the scaled image),
    random horizontal flip. Random numbers come from ``generator`` (torch's default generator if
    None, which DataLoader seeds per worker), always the same count per call."""

    crop_size: int | tuple[int, int] | None
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        H, W = mask.shape
        u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        lo, hi = self.scale_range
        s = lo + (hi - lo) * u[0]
        Hs, Ws = max(1, round(H * s)), max(1, round(W * s))
        if self.crop_size is None:
            ch, cw = Hs, Ws
        elif isinstance(self.crop_size, int):
            ch = cw = self.crop_size
        else:
            ch, cw = self.crop_size
        top = int(u[1] * (max(Hs - ch, 0) + 1))
        left = int(u[2] * (max(Ws - cw, 0) + 1))
        image, mask = resize_crop(image, mask, (Hs, Ws), top, left, (ch, cw))
        if self.flip and u[3] < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask


def pad_collate(
    batch: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """DataLoader collate for items of different sizes (evaluation on full images): pads each to
    the largest H and W in the batch, image with 0, mask with IGNORE_INDEX (bottom/right)."""
    H = max(m.shape[0] for _, m in batch)
    W = max(m.shape[1] for _, m in batch)
    images = batch[0][0].new_zeros(len(batch), 3, H, W)
    masks = batch[0][1].new_full((len(batch), H, W), IGNORE_INDEX)
    for i, (x, m) in enumerate(batch):
        images[i, :, : m.shape[0], : m.shape[1]] = x
        masks[i, : m.shape[0], : m.shape[1]] = m
    return images, masks
