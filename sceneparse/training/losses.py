"""The training loss: cross-entropy, optionally class-weighted, label-smoothed or over the hardest pixels."""
from __future__ import annotations

import torch
from torch import nn

from sceneparse.data.stats import class_statistics, load_weights
from sceneparse.training.config import TrainConfig
from sceneparse.utils import IGNORE_INDEX


def class_weights(cfg: TrainConfig, train_ds) -> torch.Tensor | None:
    """None, weights computed on the train split (SegNet's median frequency, or ENet's milder
    1 / ln(1.10 + share); see `class_statistics`), or weights from a file."""
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "median_freq":
        weights = class_statistics(train_ds)["weights"]
    elif cfg.class_weights == "enet":
        weights = class_statistics(train_ds)["enet_weights"]
    else:
        weights = load_weights(cfg.class_weights, len(train_ds.classes))
    return torch.tensor(weights, dtype=torch.float32)


class HardPixelLoss(nn.Module):
    """Online hard example mining: cross-entropy averaged over the `keep` fraction of labelled
    pixels with the largest loss, so easy road and sky pixels stop drowning the rare classes."""

    def __init__(self, keep: float, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.keep = keep
        self.ce = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX, reduction="none",
                                      label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses = self.ce(logits, target)[target != IGNORE_INDEX]
        if losses.numel() == 0:
            return logits.sum() * 0.0  # nothing labelled: zero loss that still has a graph
        k = max(1, int(self.keep * losses.numel()))
        return losses.topk(k, sorted=False).values.mean()


class SafeCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy averaged over the labelled pixels, and zero (with a graph) when a batch has
    none: a mask that is all void, or a crop that lands wholly in void, contributes nothing instead
    of the NaN that 0 / 0 gives. Otherwise exactly `nn.CrossEntropyLoss`."""

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__(weight=weight, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labelled = target != self.ignore_index
        if self.weight is not None:  # labelled pixels of weight-0 classes only: 0 / 0 again
            empty = not bool((self.weight[target[labelled]].sum() > 0) if bool(labelled.any()) else False)
        else:
            empty = not bool(labelled.any())
        if empty:
            return logits.sum() * 0.0
        return super().forward(logits, target)


def build_criterion(cfg: TrainConfig, weights: torch.Tensor | None) -> nn.Module:
    if cfg.ohem_keep and cfg.ohem_keep < 1:
        return HardPixelLoss(cfg.ohem_keep, weights, cfg.label_smoothing)
    return SafeCrossEntropy(weight=weights, label_smoothing=cfg.label_smoothing)
