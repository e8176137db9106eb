"""Joint image + mask transforms: `t(image, mask, rng) -> (image, mask)`.

Images enter as uint8 HxWx3 arrays and masks as uint8 HxW train ids. Every random choice is
drawn from `rng` (a `numpy.random.Generator`), so a transform is a pure function of its inputs
and the seed. Masks are always resized nearest-neighbour. Resizing uses PIL and colour work is
vectorised numpy: this runs on the same few CPU cores as training.

Cropping is split in two so that the expensive steps only see the crop: `RandomCrop` picks the
window (smaller than asked when the image is smaller), and `Pad`, after `Normalize`, fills the
rest with 0 in the image (the mean colour) and 255 (ignore) in the mask.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from sceneparse.utils import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple]
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as PIL's "L" conversion


def _resize(image: np.ndarray, mask: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    if image.shape[:2] == (height, width):
        return image, mask
    image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
    return image, mask


class Compose:
    """Apply transforms in order, passing the same generator along."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image, mask, rng: np.random.Generator):
        for t in self.transforms:
            image, mask = t(image, mask, rng)
        return image, mask

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class RandomScale:
    """Resize both by one factor drawn uniformly from `scale` (image bilinear, mask nearest)."""

    def __init__(self, scale: tuple[float, float] = (0.5, 2.0)):
        self.scale = scale

    def __call__(self, image, mask, rng):
        s = rng.uniform(*self.scale)
        h, w = mask.shape
        return _resize(image, mask, max(1, round(h * s)), max(1, round(w * s)))

    def __repr__(self) -> str:
        return f"RandomScale({self.scale})"


class RandomCrop:
    """Cut a random (h, w) window; where the image is smaller, keep all of it (`Pad` fills the rest)."""

    def __init__(self, size: tuple[int, int]):
        self.size = size

    def __call__(self, image, mask, rng):
        h, w = mask.shape
        ch, cw = min(self.size[0], h), min(self.size[1], w)
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        return image[y:y + ch, x:x + cw], mask[y:y + ch, x:x + cw]

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class Pad:
    """Pad bottom and right up to (h, w): `fill` in the image, `ignore_index` in the mask."""

    def __init__(self, size: tuple[int, int], fill: float = 0.0, ignore_index: int = IGNORE_INDEX):
        self.size, self.fill, self.ignore_index = size, fill, ignore_index

    def __call__(self, image, mask, rng):
        h, w = mask.shape
        ph, pw = max(self.size[0] - h, 0), max(self.size[1] - w, 0)
        if ph or pw:
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=self.fill)
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=self.ignore_index)
        return image, mask

    def __repr__(self) -> str:
        return f"Pad({self.size}, fill={self.fill}, ignore_index={self.ignore_index})"


class RandomHorizontalFlip:
    """Mirror both left-right with probability `p`."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, mask, rng):
        if rng.random() < self.p:
            return image[:, ::-1], mask[:, ::-1]
        return image, mask

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ColorJitter:
    """Scale brightness, contrast (about the mean grey) and saturation (about each pixel's grey)
    by factors drawn from [1 - x, 1 + x]; uint8 in, uint8 out, mask untouched."""

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0):
        self.strengths = (brightness, contrast, saturation)

    def __call__(self, image, mask, rng):
        b, c, s = [rng.uniform(max(0.0, 1 - x), 1 + x) for x in self.strengths]
        out = image.astype(np.float32) * b
        mean = float((out @ _GREY).mean())
        out = (out - mean) * c + mean
        grey = (out @ _GREY)[..., None]
        out = (out - grey) * s + grey
        return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask

    def __repr__(self) -> str:
        return "ColorJitter(brightness={}, contrast={}, saturation={})".format(*self.strengths)


class Normalize:
    """uint8 pixels -> float32 `(pixel / 255 - mean) / std`, still HxWx3."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean, self.std = tuple(mean), tuple(std)
        self._scale = (1.0 / (255.0 * np.asarray(std))).astype(np.float32)
        self._offset = (np.asarray(mean) / np.asarray(std)).astype(np.float32)

    def __call__(self, image, mask, rng):
        return image.astype(np.float32) * self._scale - self._offset, mask

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class ToTensor:
    """HxWx3 float array -> (3, H, W) float tensor; mask -> (H, W) long tensor."""

    def __call__(self, image, mask, rng):
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
        return image, torch.from_numpy(mask.astype(np.int64))

    def __repr__(self) -> str:
        return "ToTensor()"


class Resize:
    """Resize both to a fixed (h, w): image bilinear, mask nearest."""

    def __init__(self, size: tuple[int, int]):
        self.size = size

    def __call__(self, image, mask, rng):
        return _resize(image, mask, *self.size)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


def train_transform(crop_size: tuple[int, int] = (360, 480), scale: tuple[float, float] = (0.5, 2.0),
                    flip: bool = True, jitter: float = 0.0, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Random scale, random (h, w) crop padded with 0 / 255, optional flip and jitter, normalise."""
    steps: list[Transform] = [RandomScale(scale), RandomCrop(crop_size)]
    if flip:
        steps.append(RandomHorizontalFlip())
    if jitter > 0:
        steps.append(ColorJitter(jitter, jitter, jitter))
    steps += [Normalize(mean, std), Pad(crop_size), ToTensor()]
    return Compose(steps)


def eval_transform(size: tuple[int, int] | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Optional resize to (h, w), then normalise; no randomness."""
    steps: list[Transform] = [Resize(size)] if size else []
    return Compose(steps + [Normalize(mean, std), ToTensor()])
