"""Class statistics of a dataset and class weights for the loss.

`class_weights: median_freq` in a training config computes SegNet's weights on the train split;
`class_weights: PATH` reads a JSON written by `sceneparse data stats --out PATH`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sceneparse.data.common import SegmentationDataset
from sceneparse.utils import SceneparseError


def class_statistics(dataset: SegmentationDataset) -> dict:
    """Pixel frequencies and two kinds of class weights over every pair of `dataset`.

    "weights", SegNet's median-frequency balancing (Eigen & Fergus): freq_c = pixels of class c /
    all pixels of the images in which c appears, weight_c = median(freq) / freq_c; a class that
    never appears gets weight 0 and is left out of the median.
    "enet_weights", milder, as ENet and DABNet weight their loss: share_c = pixels of class c / all
    labelled pixels, weight_c = 1 / ln(1.10 + share_c) (1.10 is DABNet's constant; ENet's is 1.02).
    """
    n = dataset.num_classes
    pixels = np.zeros(n, dtype=np.int64)
    seen_in = np.zeros(n, dtype=np.int64)  # pixels of the images where each class appears
    for i in tqdm(range(len(dataset)), desc="class statistics", unit="img", disable=None, leave=False):
        mask = dataset.load(i)[1]
        counts = np.bincount(mask.ravel(), minlength=256)[:n]
        pixels += counts
        seen_in += (counts > 0) * mask.size
    freq = np.divide(pixels, seen_in, out=np.zeros(n), where=seen_in > 0)
    median = float(np.median(freq[freq > 0])) if (freq > 0).any() else 0.0
    weights = np.divide(median, freq, out=np.zeros(n), where=freq > 0)
    share = pixels / max(1, pixels.sum())
    return {"classes": list(dataset.classes), "frequencies": [float(f) for f in freq],
            "weights": [float(w) for w in weights], "enet_weights": [float(1 / np.log(1.10 + s)) for s in share]}


def load_weights(path: str | os.PathLike, num_classes: int) -> list[float]:
    """Class weights from a `data stats` JSON (its "weights" list), checked against the class count."""
    path = Path(path)
    if not path.is_file():
        raise SceneparseError(f"{path}: class weights file not found")
    try:
        weights = json.loads(path.read_text())["weights"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise SceneparseError(f"{path}: expected JSON with a \"weights\" list (as `sceneparse data stats` writes)") \
            from None
    if (not isinstance(weights, list) or len(weights) != num_classes
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)):
        raise SceneparseError(f"{path}: \"weights\" must be {num_classes} non-negative numbers")
    return [float(w) for w in weights]
