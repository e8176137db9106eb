"""Dataset readers by name: `build_dataset(name, root, split, transform=None, **options)`.

    ds = build_dataset("camvid", "data/camvid_segnet", "train", transform=train_transform((360, 480)))
    image, mask = ds[0]            # float (3, H, W) normalised, long (H, W) with 255 = ignore
    image, mask = ds[(0, 1234)]    # the same sample under augmentation seed 1234

Options common to all: `label_set`, `cache` (keep decoded pairs in memory), `strict`; and per
reader: `threshold` (cityscapes_pairs), `annotation` (kitti_road).
"""
from __future__ import annotations

import inspect
import os
from typing import Callable

from sceneparse.data.camvid import CamVid
from sceneparse.data.cityscapes import Cityscapes
from sceneparse.data.cityscapes_pairs import CityscapesPairs
from sceneparse.data.common import SegmentationDataset
from sceneparse.data.folder import Folder
from sceneparse.data.kitti_road import KittiRoad
from sceneparse.utils import SceneparseError

DATASETS: dict[str, type[SegmentationDataset]] = {
    cls.name: cls for cls in (CamVid, Cityscapes, CityscapesPairs, KittiRoad, Folder)
}


def dataset_class(name: str) -> type[SegmentationDataset]:
    """The reader class called `name`."""
    if name not in DATASETS:
        raise SceneparseError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
    return DATASETS[name]


def build_dataset(name: str, root: str | os.PathLike, split: str, transform: Callable | None = None,
                  **options) -> SegmentationDataset:
    """The reader `name` on `root`/`split`; without a transform, samples are normalised tensors."""
    cls = dataset_class(name)
    allowed = [p.name for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SceneparseError(f"{name}: unknown dataset option {unknown[0]!r} (valid: {', '.join(allowed)})")
    return cls(root, split, transform, **options)


__all__ = ["DATASETS", "SegmentationDataset", "build_dataset", "dataset_class"]
