"""KITTI road benchmark (`data_road`): road (or ego lane) against background, 2 classes.

    root/
      training/image_2/<cat>_<nnnnnn>.png              cat = um, umm, uu
      training/gt_image_2/<cat>_road_<nnnnnn>.png      road area
      training/gt_image_2/<cat>_lane_<nnnnnn>.png      ego lane (um only)

Ground truth colours: magenta (255,0,255) = road or lane (class 1), red (255,0,0) = background
(class 0), anything else (e.g. black don't-care strips) = ignore. `annotation="road"` or "lane"
picks the files; by default road when any `*_road_*` file exists, else lane, and the class
names say which ("background", "road") or ("background", "lane").

KITTI has no public validation labels (the `testing/` images come without ground truth), so
sceneparse holds out every fifth training frame, sorted by name, as `val`; `train` is the rest
and `trainval` all of them.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sceneparse.data.common import Sample, SegmentationDataset
from sceneparse.utils import IGNORE_INDEX, SceneparseError, read_image

ROAD_COLOR = (255, 0, 255)
BACKGROUND_COLOR = (255, 0, 0)
PALETTE = ((255, 0, 0), (255, 0, 255))


def decode_gt(gt: np.ndarray) -> np.ndarray:
    """KITTI colour ground truth HxWx3 -> uint8 mask: 1 magenta, 0 red, 255 anything else."""
    mask = np.full(gt.shape[:2], IGNORE_INDEX, dtype=np.uint8)
    mask[(gt == BACKGROUND_COLOR).all(-1)] = 0
    mask[(gt == ROAD_COLOR).all(-1)] = 1
    return mask


class KittiRoad(SegmentationDataset):
    name = "kitti_road"
    splits = ("train", "val")
    palette = PALETTE

    def __init__(self, root: str | os.PathLike, split: str, transform=None, *, annotation: str | None = None,
                 label_set: str | None = None, cache: bool = False, strict: bool = True):
        if annotation not in (None, "road", "lane"):
            raise SceneparseError(f"kitti_road: annotation must be 'road' or 'lane', got {annotation!r}")
        gt_dir = Path(root) / "training" / "gt_image_2"
        self.annotation = annotation or ("road" if any(gt_dir.glob("*_road_*.png")) else "lane")
        self.classes = ("background", self.annotation)
        super().__init__(root, split, transform, label_set=label_set, cache=cache, strict=strict)

    def layout_hint(self, split: str) -> str:
        return (f"expected {self.root / 'training' / 'image_2'}/*.png with "
                f"{self.root / 'training' / 'gt_image_2'}/*_{self.annotation}_*.png")

    def find_samples(self, split: str) -> tuple[list[Sample], list[str]]:
        images = sorted((self.root / "training" / "image_2").glob("*.png"))
        gt_dir = self.root / "training" / "gt_image_2"
        samples, problems = [], []
        for n, image in enumerate(images):
            if (n % 5 == 0) != (split == "val"):
                continue
            category, _, number = image.stem.rpartition("_")
            label = gt_dir / f"{category}_{self.annotation}_{number}.png"
            if not category:
                problems.append(f"{image}: expected a name like um_000000.png")
            elif label.is_file():
                samples.append((image, label))
            elif self.annotation == "road" or category == "um":  # only um frames have lane ground truth
                problems.append(f"{image}: image without mask ({label} not found)")
        return samples, problems

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.samples[i]
        return read_image(image_path), decode_gt(read_image(label_path))
