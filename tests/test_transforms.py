"""Joint transforms: alignment of image and mask, padding values, determinism, exact arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sceneparse.data.transforms import (
    ColorJitter, Compose, Normalize, Pad, RandomCrop, RandomHorizontalFlip, RandomScale, Resize, ToTensor,
    eval_transform, train_transform,
)
from sceneparse.utils import IMAGENET_MEAN, IMAGENET_STD

COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)], dtype=np.uint8)


def blocks(height: int = 72, width: int = 96, block: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A picture of solid blocks; the mask is the block colour's index (the last class is ignore)."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, len(COLOURS), (height // block, width // block))
    classes = np.kron(cells, np.ones((block, block), dtype=np.int64))
    mask = np.where(classes == len(COLOURS) - 1, 255, classes).astype(np.uint8)
    return COLOURS[classes], mask


def unnormalise(x: torch.Tensor) -> np.ndarray:
    image = x.numpy().transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return np.rint(image * 255).astype(np.int64)


@pytest.mark.parametrize("seed", range(12))
def test_train_transform_keeps_image_and_mask_aligned(seed):
    image, mask = blocks(seed=seed)
    t = train_transform(crop_size=(64, 80), scale=(0.5, 2.0), flip=True)
    x, y = t(image, mask, np.random.default_rng(seed))
    assert x.shape == (3, 64, 80) and y.shape == (64, 80) and y.dtype == torch.int64
    pixels, target = unnormalise(x), y.numpy()
    padded = (x == 0).all(0).numpy()
    assert (target[padded] == 255).all()
    checked = 0
    for k, colour in enumerate(COLOURS):
        exact = (pixels == colour).all(-1)  # block interiors keep their exact colour under bilinear resizing
        expected = 255 if k == len(COLOURS) - 1 else k
        assert (target[exact] == expected).all()
        checked += exact.sum()
    assert checked + padded.sum() > 0.5 * target.size


def test_alignment_survives_each_step_and_flip_really_flips():
    image, mask = blocks()
    flipped_image, flipped_mask = RandomHorizontalFlip(p=1.0)(image, mask, np.random.default_rng(0))
    assert np.array_equal(flipped_image, image[:, ::-1]) and np.array_equal(flipped_mask, mask[:, ::-1])
    scaled_image, scaled_mask = RandomScale((1.5, 1.5))(image, mask, np.random.default_rng(0))
    assert scaled_mask.shape == (108, 144) and scaled_image.shape == (108, 144, 3)
    assert set(np.unique(scaled_mask)) <= set(np.unique(mask))  # nearest: no new label values
    crop_image, crop_mask = RandomCrop((40, 50))(scaled_image, scaled_mask, np.random.default_rng(3))
    assert crop_mask.shape == (40, 50)
    # locate the crop in the scaled pair: the same window in both
    for y in range(108 - 40 + 1):
        for x in range(144 - 50 + 1):
            if np.array_equal(scaled_image[y:y + 40, x:x + 50], crop_image):
                assert np.array_equal(scaled_mask[y:y + 40, x:x + 50], crop_mask)
                return
    pytest.fail("crop window not found in the scaled image")


def test_crop_and_pad_when_the_image_is_smaller():
    image, mask = blocks(height=16, width=24)
    t = Compose([RandomCrop((32, 40)), Normalize(), Pad((32, 40)), ToTensor()])
    x, y = t(image, mask, np.random.default_rng(0))
    assert x.shape == (3, 32, 40)
    assert (x[:, 16:] == 0).all() and (x[:, :, 24:] == 0).all()  # exactly 0 after normalisation
    assert (y[16:] == 255).all() and (y[:, 24:] == 255).all()
    assert torch.equal(y[:16, :24], torch.from_numpy(mask.astype(np.int64)))


def test_same_seed_same_output_and_seeds_differ():
    image, mask = blocks()
    t = train_transform(crop_size=(48, 64), jitter=0.4)
    a = t(image, mask, np.random.default_rng(5))
    b = t(image, mask, np.random.default_rng(5))
    c = t(image, mask, np.random.default_rng(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_normalize_and_eval_transform():
    image, mask = blocks()
    x, y = eval_transform()(image, mask, np.random.default_rng(0))
    expected = (image / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert torch.allclose(x, torch.from_numpy(expected.transpose(2, 0, 1)).float(), atol=1e-5)
    assert torch.equal(y, torch.from_numpy(mask.astype(np.int64)))
    x, y = eval_transform(size=(36, 48))(image, mask, np.random.default_rng(0))
    assert x.shape == (3, 36, 48) and torch.equal(y, torch.from_numpy(mask[::2, ::2].astype(np.int64)))


def test_resize_mask_is_nearest():
    mask = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    _, big = Resize((6, 6))(image, mask, None)
    assert np.array_equal(big, np.kron(mask, np.ones((3, 3), dtype=np.uint8)))


def test_color_jitter_arithmetic_and_mask_untouched():
    image, mask = blocks()
    image = (image // 2 + 20).astype(np.uint8)
    out, out_mask = ColorJitter(brightness=0.3, contrast=0.4, saturation=0.5)(image, mask, np.random.default_rng(11))
    rng = np.random.default_rng(11)
    b, c, s = rng.uniform(0.7, 1.3), rng.uniform(0.6, 1.4), rng.uniform(0.5, 1.5)
    luma = np.array([0.299, 0.587, 0.114])
    expected = image * b
    expected = (expected - (expected @ luma).mean()) * c + (expected @ luma).mean()
    grey = (expected @ luma)[..., None]
    expected = np.clip((expected - grey) * s + grey, 0, 255)
    assert out.dtype == np.uint8 and out_mask is mask
    assert np.abs(out - expected).max() <= 1
    assert np.abs(out.astype(int) - image).mean() > 1  # it did change the picture


def test_train_transform_output_range_and_size_for_every_scale():
    image, mask = blocks(height=40, width=56)
    t = train_transform(crop_size=(48, 48), scale=(0.5, 2.0), jitter=0.3)
    for seed in range(10):
        x, y = t(image, mask, np.random.default_rng(seed))
        assert x.shape == (3, 48, 48) and y.shape == (48, 48)
        assert set(torch.unique(y).tolist()) <= set(np.unique(mask).tolist()) | {255}
