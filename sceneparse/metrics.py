"""The confusion matrix and every score derived from it.

One int64 matrix per run (rows = ground truth, columns = prediction) is accumulated with
`torch.bincount` over the pixels whose target is not ignored; batches, images and processes
are simply summed. All scores are pure functions of that matrix, so a merged or all-reduced
matrix gives exactly the scores of a single pass over all the data.

IoU follows cityscapesscripts: a class with neither ground truth nor prediction has no IoU
(NaN, `None` in JSON) and is left out of the mean.
"""
from __future__ import annotations

import json
import math
import os
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from sceneparse.utils import IGNORE_INDEX, SceneparseError, atomic_path


class ConfusionMatrix:
    """Pixel counts `matrix[gt, pred]` accumulated over any number of batches."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predicted and ground-truth class indices (equal shapes, any shape)."""
        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        if pred.shape != target.shape:
            raise SceneparseError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        n = self.num_classes
        _check_range(pred, n, "prediction value {} is outside the classes [0, %d)" % n)
        keep = target != self.ignore_index
        pred, target = pred[keep].long(), target[keep].long()
        _check_range(target, n, "label value {} is neither a class in [0, %d) nor ignore %d" % (n, self.ignore_index))
        counts = torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)
        self.matrix += counts.to(self.matrix.device)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix of the same classes into this one (e.g. from another worker)."""
        if other.num_classes != self.num_classes:
            raise SceneparseError(
                f"cannot merge confusion matrices of {other.num_classes} and {self.num_classes} classes")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the matrix over all processes of an initialised process group; no-op otherwise."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            tensor = self.matrix.cuda() if dist.get_backend() == "nccl" else self.matrix
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            self.matrix = tensor.cpu()
        return self

    def reset(self) -> None:
        self.matrix.zero_()

    def report(self, class_names: Sequence[str]) -> dict:
        return report(self.matrix, class_names)


def _check_range(values: torch.Tensor, n: int, message: str) -> None:
    if values.numel():
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= n:
            raise SceneparseError(message.format(low if low < 0 else high))


def _array(matrix) -> np.ndarray:
    array = torch.as_tensor(matrix).cpu().numpy().astype(np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise SceneparseError(f"confusion matrix must be square, got shape {array.shape}")
    return array


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0 (an undefined score, not a zero one)."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else math.nan


def per_class_iou(matrix) -> np.ndarray:
    """tp / (tp + fp + fn) per class; NaN for a class with neither ground truth nor prediction."""
    m = _array(matrix)
    tp = np.diag(m)
    return _divide(tp, m.sum(0) + m.sum(1) - tp)


def mean_iou(matrix) -> float:
    return _nanmean(per_class_iou(matrix))


def pixel_accuracy(matrix) -> float:
    """Share of all counted pixels that are predicted correctly (global accuracy)."""
    m = _array(matrix)
    return float(np.trace(m) / m.sum()) if m.sum() > 0 else math.nan


def per_class_accuracy(matrix) -> np.ndarray:
    """tp / ground-truth pixels per class (recall); NaN for a class without ground truth."""
    m = _array(matrix)
    return _divide(np.diag(m), m.sum(1))


def mean_class_accuracy(matrix) -> float:
    return _nanmean(per_class_accuracy(matrix))


def fw_iou(matrix) -> float:
    """IoU of each class weighted by its share of ground-truth pixels."""
    m = _array(matrix)
    total = m.sum()
    if total == 0:
        return math.nan
    freq = m.sum(1) / total
    present = freq > 0
    return float((freq[present] * per_class_iou(m)[present]).sum())


def collapse(matrix, mapping: Sequence[int]) -> torch.Tensor:
    """Sum classes into groups: `mapping[c]` is the group of class c (e.g. Cityscapes categories)."""
    m = torch.as_tensor(matrix).cpu().long()
    mapping = torch.as_tensor(list(mapping), dtype=torch.long)
    if mapping.numel() != m.shape[0]:
        raise SceneparseError(f"group mapping has {mapping.numel()} entries for {m.shape[0]} classes")
    if int(mapping.min()) < 0:
        raise SceneparseError(f"group mapping has a negative group {int(mapping.min())}")
    onehot = torch.nn.functional.one_hot(mapping, int(mapping.max()) + 1)
    return onehot.T @ m @ onehot


def _none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _scores(matrix, names: Sequence[str]) -> tuple[float, dict]:
    m = _array(matrix)
    if len(names) != m.shape[0]:
        raise SceneparseError(f"{len(names)} class names for a {m.shape[0]}-class confusion matrix")
    iou, acc = per_class_iou(m), per_class_accuracy(m)
    per = {name: {"iou": _none(i), "acc": _none(a)} for name, i, a in zip(names, iou, acc)}
    return _none(_nanmean(iou)), per


def report(matrix, class_names: Sequence[str]) -> dict:
    """All scores as a JSON-ready dict (fractions in [0, 1], undefined scores as None).

    Scores of coarser groups (e.g. Cityscapes categories) are `report(collapse(matrix, groups), names)`.
    """
    miou, per_class = _scores(matrix, class_names)
    return {
        "miou": miou,
        "pixel_acc": _none(pixel_accuracy(matrix)),
        "mean_class_acc": _none(mean_class_accuracy(matrix)),
        "fwiou": _none(fw_iou(matrix)),
        "per_class": per_class,
        "confusion_matrix": torch.as_tensor(matrix).cpu().long().tolist(),
    }


def _fmt(x: float | None) -> str:
    return "     -" if x is None else f"{x:6.4f}"


def format_table(report: dict) -> str:
    """An aligned text table: one line per class (IoU, acc), then the summary lines."""
    per = report["per_class"]
    summary = [("mIoU", "miou"), ("pixel acc", "pixel_acc"), ("mean class acc", "mean_class_acc"),
               ("fwIoU", "fwiou")]
    width = max(len(name) for name in [*per, *dict(summary)])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'acc':>6}"]
    lines += [f"{name:<{width}}  {_fmt(s['iou'])}  {_fmt(s['acc'])}" for name, s in per.items()]
    lines.append("")
    lines += [f"{label:<{width}}  {_fmt(report[key])}" for label, key in summary if key in report]
    return "\n".join(lines)


def save_report(report: dict, path: str | os.PathLike) -> None:
    """Write the report as JSON atomically (NaN is never written: undefined scores are null)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
