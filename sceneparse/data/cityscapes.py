"""Cityscapes in its official layout, with the 19 train classes or the 7 categories.

    root/
      leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
      gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Masks are read from the official `labelIds` files and mapped to train ids here (ids with
trainId 255 in cityscapesscripts' table are ignored). `labelTrainIds` files are not used: a
trainIds file saved under a labelIds name fails loudly, because 255 is not a label id.
With `label_set="categories"` the 19 classes are merged into flat, construction, object,
nature, sky, human, vehicle (the categories of the official evaluation; void stays ignored).
"""
from __future__ import annotations

import numpy as np

from sceneparse.data.common import Sample, SegmentationDataset, lookup_table, remap
from sceneparse.data.labels import (
    CITYSCAPES_CATEGORIES, CITYSCAPES_CATEGORY_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_LABELS, CITYSCAPES_PALETTE,
    CITYSCAPES_TRAINID_TO_CATEGORY,
)
from sceneparse.utils import IGNORE_INDEX, read_image, read_label


def train_id_table(label_set: str) -> np.ndarray:
    """uint8[256]: train id -> id in `label_set` ("classes": unchanged, "categories": category index)."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    n = len(CITYSCAPES_CLASSES)
    table[:n] = CITYSCAPES_TRAINID_TO_CATEGORY if label_set == "categories" else range(n)
    return table


# Official label id -> id in each label set; ids outside the table (e.g. 255) are errors.
_LABEL_ID_TABLES = {
    label_set: lookup_table({lab.id: int(train_id_table(label_set)[lab.train_id])
                             for lab in CITYSCAPES_LABELS if lab.id >= 0})
    for label_set in ("classes", "categories")
}


class CityscapesLabelSets(SegmentationDataset):
    """Classes, palette and category map shared by the Cityscapes-based readers."""

    label_sets = ("classes", "categories")
    categories = CITYSCAPES_CATEGORIES
    category_map = CITYSCAPES_TRAINID_TO_CATEGORY  # train id -> category index

    @property
    def classes(self) -> tuple[str, ...]:
        return CITYSCAPES_CATEGORIES if self.label_set == "categories" else CITYSCAPES_CLASSES

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return CITYSCAPES_CATEGORY_PALETTE if self.label_set == "categories" else CITYSCAPES_PALETTE


class Cityscapes(CityscapesLabelSets):
    name = "cityscapes"
    splits = ("train", "val", "test")

    def layout_hint(self, split: str) -> str:
        return (f"expected {self.root / 'leftImg8bit' / split}/<city>/*_leftImg8bit.png and "
                f"{self.root / 'gtFine' / split}/<city>/*_gtFine_labelIds.png")

    def find_samples(self, split: str) -> tuple[list[Sample], list[str]]:
        images = sorted((self.root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        labels = set((self.root / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))
        samples, problems = [], []
        for image in images:
            label = (self.root / "gtFine" / split / image.parent.name /
                     image.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png"))
            if label in labels:
                samples.append((image, label))
                labels.discard(label)
            else:
                problems.append(f"{image}: image without mask ({label} not found)")
        problems += [f"{label}: mask without image" for label in sorted(labels)]
        return samples, problems

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.samples[i]
        table = _LABEL_ID_TABLES[self.label_set]
        return read_image(image_path), remap(read_label(label_path), table, label_path)
