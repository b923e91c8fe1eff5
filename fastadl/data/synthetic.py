"""The default dataset: procedurally generated scenes, no files needed.

Each scene is a smooth two-colour background with 2–4 textured objects painted over it. An
object's class is the pair (shape, texture):

    1 striped disc    2 blobby disc    3 striped square    4 blobby square    5 ring (either)

Every object and the background draw their two colours from the same distribution, so colour
says nothing about the class. Telling stripes (period 3–4.5 px) from blobs (wavelength 9–14 px)
needs fine resolution; telling a disc from a square of equal area, or a ring's band from a disc,
needs context at the object's scale (radius ≈ 0.12–0.2 of the image). Item i of a split is a
pure function of (seed, split, i), so DataLoader workers agree and nothing is stored.
"""

from __future__ import annotations

import numpy as np

from fastadl.data.base import SegmentationDataset, Transform

CLASS_NAMES = [
    "background", "striped disc", "blobby disc", "striped square", "blobby square", "ring",
]  # fmt: skip
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48)]
# class → (shape, texture); texture None: drawn at random, so only the shape decides.
_CLASSES = {
    1: ("disc", "stripes"),
    2: ("disc", "blobs"),
    3: ("square", "stripes"),
    4: ("square", "blobs"),
    5: ("ring", None),
}
_SPLIT_CODES = {"train": 0, "val": 1}
DEFAULT_NUM_IMAGES = {"train": 400, "val": 100}


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two colours that differ by 88–168 levels in every channel (so a texture is visible),
    identically distributed for every class."""
    a = rng.uniform(0, 256, 3)
    b = (a + 128 + rng.uniform(-40, 40, 3)) % 256
    return a, b


def _stripes(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    theta, period, phase = rng.uniform(0, np.pi), rng.uniform(3.0, 4.5), rng.uniform(0, 2 * np.pi)
    return np.sin((x * np.cos(theta) + y * np.sin(theta)) * (2 * np.pi / period) + phase) > 0


def _blobs(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi, (3, 1, 1))
    k = 2 * np.pi / rng.uniform(9.0, 14.0, (3, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (3, 1, 1))
    return np.cos(k * (x * np.cos(theta) + y * np.sin(theta)) + phase).sum(0) > 0


def _shape(shape: str, dx: np.ndarray, dy: np.ndarray, r: float, angle: float) -> np.ndarray:
    if shape == "disc":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        # Same area as the disc of radius r (half-side r·√π/2), so size is no cue.
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        return np.maximum(np.abs(u), np.abs(v)) <= r * np.sqrt(np.pi) / 2
    d2 = dx * dx + dy * dy  # ring: a band from 0.6 to 1 of an outer radius 1.2 r
    return (d2 <= (1.2 * r) ** 2) & (d2 >= (0.72 * r) ** 2)


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: image uint8 (size, size, 3), mask uint8 (size, size) with classes 0..5."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    c0, c1 = _colour_pair(rng)
    theta = rng.uniform(0, 2 * np.pi)
    t = ((x * np.cos(theta) + y * np.sin(theta)) / size + 1.5) % 1.0  # smooth ramp, one wrap
    t = np.minimum(t, 1 - t)[..., None] * 2
    image = c0 * (1 - t) + c1 * t
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(rng.integers(2, 5)):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        shape, texture = _CLASSES[cls]
        if texture is None:
            texture = "stripes" if rng.random() < 0.5 else "blobs"
        cx, cy = rng.uniform(0.15 * size, 0.85 * size, 2)
        r = rng.uniform(0.12, 0.2) * size
        region = _shape(shape, x - cx, y - cy, r, rng.uniform(0, np.pi / 2))
        pattern = (_stripes if texture == "stripes" else _blobs)(rng, x, y)
        a, b = _colour_pair(rng)
        image[region] = np.where(pattern[region, None], a, b)
        mask[region] = cls
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


class SyntheticScenes(SegmentationDataset):
    """``num_images`` scenes of ``image_size``² pixels; train and val use disjoint seeds.

    ids are ``<split>-<seed>-<index>`` so a persisted split made for one seed does not silently
    apply to another.
    """

    # Mild scaling only: a 2× zoom would turn fine stripes into something blob-sized and make
    # the texture half of the class ambiguous.
    default_scale_range = (0.75, 1.25)

    def __init__(
        self,
        split: str,
        seed: int = 0,
        image_size: int = 64,
        num_images: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        if image_size < 16:
            raise ValueError(f"synthetic image_size must be >= 16, got {image_size}")
        self.split, self.seed, self.image_size = split, seed, image_size
        n = DEFAULT_NUM_IMAGES[split] if num_images is None else num_images
        if n < 1:
            raise ValueError(f"synthetic num_images must be >= 1, got {n}")
        self.ids = [f"{split}-{seed}-{i:05d}" for i in range(n)]
        self.class_names = list(CLASS_NAMES)
        self.palette = list(PALETTE)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self.ids):
            raise IndexError(f"index {index} out of range for {len(self.ids)} synthetic images")
        rng = np.random.default_rng([self.seed, _SPLIT_CODES[self.split], index])
        return render_scene(rng, self.image_size)
