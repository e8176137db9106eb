"""Cityscapes photo|label composites as pix2pix (and the Kaggle "Cityscapes image pairs") ship them.

    root/
      train/1.jpg 2.jpg ...
      val/1.jpg ...  500.jpg

Each file is one image: the street photo on the left half and the label, colour-coded with the
Cityscapes palette, on the right half (256x256 each in the common 512x256 version). Files are
ordered by number, which follows the sorted Cityscapes frame names (val/1.jpg is
frankfurt_000000_000294).

The label colours went through resizing and JPEG, so they are decoded to the nearest colour of
cityscapesscripts' table; a pixel farther than `threshold` (Euclidean RGB distance, default 40)
from every table colour is ignored. Colours that several labels share decode as follows: black
(unlabeled, ego vehicle, rectification border, out of roi, static) is ignored, (153,153,153) is
the train class pole (not polegroup) and (0,0,142) is car (not license plate). Colours of labels
without a train id (parking, guard rail, ...) decode to that label and so are ignored, rather
than to the nearest train class.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from sceneparse.data.cityscapes import CityscapesLabelSets, train_id_table
from sceneparse.data.common import Sample
from sceneparse.data.labels import CITYSCAPES_LABELS
from sceneparse.utils import IGNORE_INDEX, SceneparseError, read_image

_SUFFIXES = (".jpg", ".jpeg", ".png")


def _color_table() -> tuple[np.ndarray, np.ndarray]:
    """The distinct label colours (K x 3) and the train id each decodes to (255 when none has one)."""
    colors: list[tuple[int, int, int]] = []
    train_ids: list[int] = []
    for lab in CITYSCAPES_LABELS:
        if lab.id < 0:
            continue  # license plate: same colour as car, no id of its own
        if lab.color not in colors:
            colors.append(lab.color)
            train_ids.append(IGNORE_INDEX)
        k = colors.index(lab.color)
        if train_ids[k] == IGNORE_INDEX and 0 <= lab.train_id < IGNORE_INDEX:
            train_ids[k] = lab.train_id
    return np.array(colors, dtype=np.float32), np.array(train_ids, dtype=np.uint8)


COLORS, COLOR_TRAIN_IDS = _color_table()
_BLOCK = 4096
_DISTANCE_MATRIX = np.concatenate([-2 * COLORS.T, (COLORS ** 2).sum(1)[None]])  # 4 x K


def decode_colors(label: np.ndarray, threshold: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """Colour label HxWx3 -> (uint8 train ids with 255 = ignore, bool mask of pixels beyond `threshold`)."""
    pixels = np.empty((label.shape[0] * label.shape[1], 4), dtype=np.float32)
    pixels[:, :3] = label.reshape(-1, 3)
    pixels[:, 3] = 1.0
    nearest = np.empty(len(pixels), dtype=np.intp)
    d2 = (pixels[:, :3] ** 2).sum(1)
    # In blocks: small products stay single-threaded in BLAS, which is several times faster on a
    # busy machine than a threaded product over the whole image.
    for start in range(0, len(pixels), _BLOCK):
        # |p - c|^2 - |p|^2 = -2 p.c + |c|^2 for every pixel and colour (exact for 8-bit values)
        partial = pixels[start:start + _BLOCK] @ _DISTANCE_MATRIX
        k = partial.argmin(1)
        nearest[start:start + _BLOCK] = k
        d2[start:start + _BLOCK] += partial[np.arange(len(k)), k]
    far = d2 > threshold * threshold
    ids = COLOR_TRAIN_IDS[nearest]
    ids[far] = IGNORE_INDEX
    return ids.reshape(label.shape[:2]), far.reshape(label.shape[:2])


def _order(path: Path) -> tuple:
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.name)


class CityscapesPairs(CityscapesLabelSets):
    name = "cityscapes_pairs"
    splits = ("train", "val")

    def __init__(self, root: str | os.PathLike, split: str, transform=None, *, threshold: float = 40.0,
                 label_set: str | None = None, cache: bool = False, strict: bool = True):
        if not threshold >= 0:  # also refuses nan
            raise SceneparseError(f"cityscapes_pairs: colour threshold must be >= 0, got {threshold}")
        self.threshold = threshold
        super().__init__(root, split, transform, label_set=label_set, cache=cache, strict=strict)
        self._to_set = train_id_table(self.label_set)

    def layout_hint(self, split: str) -> str:
        return f"expected {self.root / split}/<n>.jpg photo|label composites"

    def find_samples(self, split: str) -> tuple[list[Sample], list[str]]:
        folder = self.root / split
        files = [p for p in folder.glob("*") if p.suffix.lower() in _SUFFIXES] if folder.is_dir() else []
        return [(p, p) for p in sorted(files, key=_order)], []

    def read_pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The photo half and the raw colour-label half of composite i."""
        path = self.samples[i][0]
        composite = read_image(path)
        h, w = composite.shape[:2]
        if w % 2:
            raise SceneparseError(f"{path}: expected a photo|label composite of even width, got {w}x{h}")
        return np.ascontiguousarray(composite[:, :w // 2]), np.ascontiguousarray(composite[:, w // 2:])

    def read_decoded(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Photo, mask in the label set, and the pixels ignored for being beyond the colour threshold."""
        photo, label = self.read_pair(i)
        ids, far = decode_colors(label, self.threshold)
        return photo, self._to_set[ids], far

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.read_decoded(i)[:2]

    @property
    def photo_size(self) -> tuple[int, int] | None:
        """(H, W) of the photos (of the first composite): pix2pix squeezed 2048x1024 frames into
        256x256, so a model trained here should see any other photo resized the same way."""
        if not self.samples:
            return None
        with Image.open(self.samples[0][0]) as im:
            return (im.height, im.width // 2)
