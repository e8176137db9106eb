"""The dataset base class every reader subclasses, and the label checks they share.

A reader finds its `(image_path, label_path)` pairs (`find_samples`) and decodes one pair into
an RGB image and a mask of train ids (`read`). The base class checks the pair (same size, only
class ids or 255), optionally keeps decoded pairs in memory, and applies the joint transform with
a generator seeded by the index, so augmentation is a pure function of `(index, seed)`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sceneparse.data.transforms import eval_transform
from sceneparse.utils import IGNORE_INDEX, SceneparseError

Sample = tuple[Path, Path]


class SegmentationDataset(torch.utils.data.Dataset):
    """Base of all readers: `load(i)` gives `(uint8 HxWx3 image, uint8 HxW train-id mask)`.

    Subclasses set `name`, `splits`, `label_sets` and, per instance or class, `classes` and
    `palette`; they implement `find_samples()` and `read(i)`.
    """

    name = ""
    splits: tuple[str, ...] = ()
    label_sets: tuple[str, ...] = ("classes",)
    ignore_index = IGNORE_INDEX
    classes: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()

    def __init__(self, root: str | os.PathLike, split: str, transform: Callable | None = None, *,
                 label_set: str | None = None, cache: bool = False, strict: bool = True):
        """`strict=False` keeps going past pairing problems and lists them in `self.problems`
        (what `data verify` reports); by default the first problem is raised."""
        self.root = Path(root)
        if not self.root.is_dir():
            raise SceneparseError(f"{self.root}: {self.name} dataset root not found")
        choices = self.splits + (("trainval",) if {"train", "val"} <= set(self.splits) else ())
        if split not in choices:
            raise SceneparseError(f"{self.root}: {self.name} has no split {split!r} (choose from {', '.join(choices)})")
        self.label_set = label_set or self.label_sets[0]
        if self.label_set not in self.label_sets:
            raise SceneparseError(f"{self.name}: unknown label set {self.label_set!r} "
                                  f"(choose from {', '.join(self.label_sets)})")
        self.split = split
        self.transform = transform or eval_transform()
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        parts = ("train", "val") if split == "trainval" else (split,)
        self.samples: list[Sample] = []
        self.problems: list[str] = []
        for part in parts:
            samples, problems = self.find_samples(part)
            self.samples += samples
            self.problems += problems
        if strict and self.problems:
            raise SceneparseError(self.problems[0])
        if not self.samples:
            raise SceneparseError(f"{self.root}: no {split} images found ({self.layout_hint(split)})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def find_samples(self, split: str) -> tuple[list[Sample], list[str]]:
        """Pairs of one split, and one-line messages for files that could not be paired."""
        raise NotImplementedError

    def layout_hint(self, split: str) -> str:
        """Where the files of `split` were expected, for the 'no images found' message."""
        raise NotImplementedError

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode pair i into an RGB uint8 image and a uint8 mask of train ids (255 = ignore)."""
        raise NotImplementedError

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair i as `(uint8 HxWx3 image, uint8 HxW mask)`, checked and (with `cache`) kept in memory."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        image, mask = self.read(i)
        image_path, label_path = self.samples[i]
        if image.shape[:2] != mask.shape:
            raise SceneparseError(f"{label_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image "
                                  f"{image_path.name} is {image.shape[1]}x{image.shape[0]}")
        image.setflags(write=False)  # cached arrays are shared between epochs: transforms must copy
        mask.setflags(write=False)
        if self.cache is not None:
            self.cache[i] = (image, mask)
        return image, mask

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int | tuple[int, int]):
        i, seed = index if isinstance(index, tuple) else (index, index)
        image, mask = self.load(i)
        return self.transform(image, mask, np.random.default_rng(seed))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"label_set={self.label_set!r}, {len(self)} samples, {self.num_classes} classes)")


def lookup_table(pairs: dict[int, int], size: int = 256) -> np.ndarray:
    """A raw-value -> train-id table; values not in `pairs` are -1 (not allowed)."""
    table = np.full(size, -1, dtype=np.int16)
    for raw, train_id in pairs.items():
        table[raw] = train_id
    return table


def remap(raw: np.ndarray, table: np.ndarray, path: Path) -> np.ndarray:
    """Map raw label values through `table` to a uint8 mask; a value the table does not allow is an error."""
    if raw.ndim != 2:
        raise SceneparseError(f"{path}: expected a single-channel label image")
    raw = raw.astype(np.int64, copy=False)
    if raw.size and (raw.min() < 0 or raw.max() >= len(table)):
        bad = raw.min() if raw.min() < 0 else raw.max()
        raise SceneparseError(f"{path}: label value {bad} is neither a class id nor the ignore value")
    mask = table[raw]
    wrong = mask < 0
    if wrong.any():
        raise SceneparseError(f"{path}: label value {raw[wrong][0]} is neither a class id nor the ignore value")
    return mask.astype(np.uint8)
