"""Joint transforms: same geometry for image and mask, padding, determinism."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastadl.data import IGNORE_INDEX, TrainTransform, denormalize, pad_collate
from fastadl.data.transforms import resize_crop, to_tensors


def block_image(h=24, w=36, block=4, seed=0):
    """Blocks of labels 0..2 drawn one-hot: channel c is 255 where the label is c, else 0.

    Bilinear resampling blends neighbouring blocks, but the mask's nearest source pixel is always
    one of the blend's taps with weight >= 1/4, so its channel stays >= 63 in the output.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (h // block + 1, w // block + 1))
    labels = np.kron(labels, np.ones((block, block), dtype=labels.dtype))[:h, :w]
    image = (np.eye(3, dtype=np.uint8)[labels] * 255).astype(np.uint8)
    return to_tensors(image, labels)


@pytest.mark.parametrize(
    "size, top, left, crop",
    [
        ((48, 72), 5, 7, (20, 30)),  # upscale ×2, inner window
        ((12, 18), 0, 0, (12, 18)),  # downscale ×0.5, whole image
        ((31, 47), 3, 2, (28, 44)),  # odd size, non-integer scale
        ((24, 36), 0, 0, (24, 36)),  # identity
    ],
)
def test_resize_crop_matches_interpolate_then_crop(size, top, left, crop):
    image, mask = block_image()
    out, out_mask = resize_crop(image, mask, size, top, left, crop)
    ref = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out, ref[:, top : top + crop[0], left : left + crop[1]])
    ref_mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0]
    assert torch.equal(out_mask, ref_mask.long()[top : top + crop[0], left : left + crop[1]])


def test_crop_larger_than_scaled_image_pads_image_with_zero_and_mask_with_ignore():
    image, mask = block_image()
    out, out_mask = resize_crop(image, mask, (12, 18), 0, 0, (20, 25))
    assert out.shape == (3, 20, 25) and out_mask.shape == (20, 25)
    assert (out[:, 12:] == 0).all() and (out[:, :, 18:] == 0).all()
    assert (out_mask[12:] == IGNORE_INDEX).all() and (out_mask[:, 18:] == IGNORE_INDEX).all()
    assert (out_mask[:12, :18] != IGNORE_INDEX).all()


def test_random_transform_pads_small_images_to_the_crop():
    image, mask = block_image(8, 10)
    t = TrainTransform(crop_size=32, scale_range=(0.5, 2.0))
    for seed in range(10):
        out, out_mask = t(image, mask, torch.Generator().manual_seed(seed))
        assert out.shape == (3, 32, 32) and out_mask.shape == (32, 32)
        assert (out_mask == IGNORE_INDEX).any()  # at most 20×20 of the 32×32 is image
        padded = out_mask == IGNORE_INDEX
        assert (out[:, padded] == 0).all()


@pytest.mark.parametrize("seed", range(12))
def test_random_transform_keeps_image_and_mask_aligned(seed):
    image, mask = block_image(seed=seed)
    t = TrainTransform(crop_size=(20, 28), scale_range=(0.5, 2.0), flip=True)
    out, out_mask = t(image, mask, torch.Generator().manual_seed(seed))
    rgb = torch.from_numpy(denormalize(out).astype(np.int64))  # (h, w, 3)
    valid = out_mask != IGNORE_INDEX
    assert valid.sum() > 0.3 * valid.numel()
    own = rgb.gather(-1, out_mask.clamp(max=2)[..., None])[..., 0]
    assert (own[valid] >= 60).all()  # the mask's label is present in the pixel's blend
    pure = valid & (rgb.max(-1).values == 255) & (rgb.sum(-1) == 255)  # one block, no blend
    assert pure.sum() > 0.3 * valid.sum()
    assert torch.equal(rgb.argmax(-1)[pure], out_mask[pure])


def test_flip_flips_both():
    image, mask = block_image()
    t = TrainTransform(crop_size=None, scale_range=(1.0, 1.0), flip=True)
    flipped = seen = 0
    for seed in range(20):
        out, out_mask = t(image, mask, torch.Generator().manual_seed(seed))
        if torch.equal(out_mask, mask):
            torch.testing.assert_close(out, image)
            seen += 1
        else:
            assert torch.equal(out_mask, mask.flip(-1))
            torch.testing.assert_close(out, image.flip(-1))
            flipped += 1
    assert flipped and seen  # both outcomes happen


def test_transform_is_deterministic_given_a_generator():
    image, mask = block_image()
    t = TrainTransform(crop_size=16)
    a = t(image, mask, torch.Generator().manual_seed(3))
    b = t(image, mask, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    outs = {t(image, mask, torch.Generator().manual_seed(s))[0].sum().item() for s in range(8)}
    assert len(outs) > 1


def test_scale_range_is_validated():
    with pytest.raises(ValueError, match="scale_range"):
        TrainTransform(crop_size=8, scale_range=(2.0, 0.5))


def test_normalise_round_trip():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x, m = to_tensors(image, np.zeros((5, 7), dtype=np.int64))
    assert x.dtype == torch.float32 and x.shape == (3, 5, 7) and m.dtype == torch.int64
    assert np.array_equal(denormalize(x), image)


def test_pad_collate_pads_to_largest():
    a = (torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.long))
    b = (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.long))
    images, masks = pad_collate([a, b])
    assert images.shape == (2, 3, 6, 5) and masks.shape == (2, 6, 5)
    assert (images[0, :, 4:] == 0).all() and (masks[0, 4:] == IGNORE_INDEX).all()
    assert (masks[1, :, 3:] == IGNORE_INDEX).all() and (masks[1, :, :3] == 1).all()
