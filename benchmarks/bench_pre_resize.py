"""What the fixed pre-resize costs per item on a Cityscapes-sized frame (2048×1024 PNG).

    python benchmarks/bench_pre_resize.py [--reps R] [--threads N]

Times, interleaved (each repetition runs every case once), what one item costs:
- ``decode + normalise``: PNG decoding and to_tensors, which every item pays once;
- ``train, files' size``: a 321 crop of the full-resolution frame (scale 1);
- ``train, half (one pass)``: the paper preset's item, pre-resize 0.5 and crop in one resampling;
- ``train, half (resize, then crop)``: the same pixels through a whole half-resolution image;
- ``val, half``: the whole frame resized to 1024×512 (the paper preset's validation item).
Medians in milliseconds; docs/FIDELITY.md has the recorded figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastadl.data import PreResize, TrainTransform
from fastadl.data.base import read_image
from fastadl.data.transforms import Resize, resize_crop, to_tensors

FRAME = (1024, 2048)  # H, W of a Cityscapes frame
CROP = 321


def write_frame(folder: Path) -> Path:
    """A smooth, noisy street-sized image (compresses like a photo, unlike pure noise)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : FRAME[0], 0 : FRAME[1]]
    base = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.float32)
    image = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    path = folder / "frame.png"
    Image.fromarray(image).save(path)
    return path


def cases(path: Path) -> dict:
    """name → a closure producing one item. Decoding is its own case (every item pays it once);
    the others start from the decoded, normalised frame, so they time the resampling alone."""
    image, mask = to_tensors(read_image(path), np.zeros(FRAME, dtype=np.int64))
    half = PreResize(factor=0.5)
    crop_full = TrainTransform(CROP, (1.0, 1.0))
    crop_half = TrainTransform(CROP, (1.0, 1.0), resize=half)

    def resize_then_crop():
        small, labels = Resize(half)(image, mask)
        return resize_crop(small, labels, tuple(labels.shape), 50, 100, (CROP, CROP))

    return {
        "decode + normalise (every item)": lambda: to_tensors(read_image(path), mask.numpy()),
        "train, files' size (crop)": lambda: crop_full(image, mask),
        "train, half (one pass)": lambda: crop_half(image, mask),
        "train, half (resize, then crop)": resize_then_crop,
        "val, half (whole frame)": lambda: Resize(half)(image, mask),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20, help="interleaved repetitions")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        runs = cases(write_frame(Path(tmp)))
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.reps):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    for name, ts in times.items():
        print(f"{name:34s} {1000 * statistics.median(ts):8.1f} ms")


if __name__ == "__main__":
    main()
