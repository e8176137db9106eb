"""Your own data: a folder of images, a folder of index masks and a small class file.

    root/
      classes.yaml
      train/images/0001.jpg  0002.png ...      RGB photos (.png, .jpg, .bmp, .tif, .webp, ...)
      train/masks/0001.png   0002.png ...      one mask per image, same file stem, PNG
      val/images/ ...  val/masks/ ...          (and test/, as you have them)

`classes.yaml`:

    names: [road, sidewalk, car]                # class i is the mask value i
    colors: [[128, 64, 128], [244, 35, 232], [0, 0, 142]]   # RGB per class, for pictures
    ignore_index: 255                           # optional (default 255): the "not labelled" value

A mask is a single-channel PNG (8-bit grey, 16-bit grey, or a palette PNG whose indices are the
classes) of the same width and height as its image. Each pixel holds a class index 0..N-1 or
the ignore value; nothing else. It is not a colour picture of the classes: an RGB mask is
rejected, and a mask of small values looks black in an image viewer — that is expected.
`sceneparse data verify --dataset folder --root ROOT` checks all of this and prints the pixel
share of every class, which shows a wrong mask at once (e.g. everything ignored).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from sceneparse.data.common import Sample, SegmentationDataset, lookup_table, remap
from sceneparse.utils import IGNORE_INDEX, IMAGE_SUFFIXES, SceneparseError, read_image, read_label



def read_classes(path: Path) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...], int]:
    """Names, colours and ignore value from classes.yaml, checked."""
    if not path.is_file():
        raise SceneparseError(f"{path}: file not found (the folder dataset needs names, colors, ignore_index)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SceneparseError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("names"), list) or not data["names"]:
        raise SceneparseError(f"{path}: expected 'names: [...]', a non-empty list of class names")
    names = tuple(str(n) for n in data["names"])
    colors = data.get("colors")
    if (not isinstance(colors, list) or len(colors) != len(names)
            or not all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                       for c in colors)):
        raise SceneparseError(f"{path}: expected 'colors:' with one [R, G, B] (0-255) per name ({len(names)})")
    ignore = data.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or not len(names) <= ignore <= 65535:
        raise SceneparseError(f"{path}: ignore_index must be an integer from {len(names)} (the number of "
                              f"classes) to 65535, got {ignore!r}")
    return names, tuple(tuple(c) for c in colors), ignore


class Folder(SegmentationDataset):
    name = "folder"
    splits = ("train", "val", "test")

    def __init__(self, root: str | os.PathLike, split: str, transform=None, *,
                 label_set: str | None = None, cache: bool = False, strict: bool = True):
        root = Path(root)
        if not root.is_dir():
            raise SceneparseError(f"{root}: folder dataset root not found")
        self.classes, self.palette, self.mask_ignore = read_classes(root / "classes.yaml")
        self._table = lookup_table({**{i: i for i in range(len(self.classes))}, self.mask_ignore: IGNORE_INDEX},
                                   size=max(256, self.mask_ignore + 1))
        super().__init__(root, split, transform, label_set=label_set, cache=cache, strict=strict)

    def layout_hint(self, split: str) -> str:
        return (f"expected {self.root / split / 'images'}/*.jpg (or another image format) and "
                f"{self.root / split / 'masks'}/*.png")

    def find_samples(self, split: str) -> tuple[list[Sample], list[str]]:
        image_dir, mask_dir = self.root / split / "images", self.root / split / "masks"
        images = sorted(p for p in image_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        masks = {p.stem: p for p in mask_dir.glob("*.png")}
        samples, problems = [], []
        for image in images:
            mask = masks.pop(image.stem, None)
            if mask is None:
                problems.append(f"{image}: image without mask ({mask_dir / (image.stem + '.png')} not found)")
            else:
                samples.append((image, mask))
        problems += [f"{mask}: mask without image" for mask in sorted(masks.values())]
        return samples, problems

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.samples[i]
        return read_image(image_path), remap(read_label(mask_path), self._table, mask_path)
