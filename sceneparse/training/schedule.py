"""What changes with the iteration: the learning rate and the training crop size."""
from __future__ import annotations

import math

from sceneparse.training.config import TrainConfig


def learning_rate(cfg: TrainConfig, iteration: int, total: int) -> float:
    """`poly`: decay (power 0.9 in the PSPNet paper) after a linear warm-up of `warmup_iters`.
    `onecycle`: a cosine rise from lr/25 to lr over the first 30% of iterations, then a cosine fall
    to lr/250,000 (the shape and defaults of PyTorch's OneCycleLR; `warmup_iters` is not used)."""
    if cfg.lr_schedule == "onecycle":
        start, end = cfg.lr / 25, cfg.lr / 25 / 1e4
        rise = max(1, round(0.3 * total))
        if iteration < rise:
            return start + (cfg.lr - start) * (1 - math.cos(math.pi * iteration / rise)) / 2
        t = min(1.0, (iteration - rise) / max(1, total - rise))
        return end + (cfg.lr - end) * (1 + math.cos(math.pi * t)) / 2
    lr = cfg.lr * (1 - min(iteration, total - 1) / total) ** cfg.poly_power
    if iteration < cfg.warmup_iters:
        lr *= (iteration + 1) / cfg.warmup_iters
    return lr


def crop_at(cfg: TrainConfig, iteration: int, total: int) -> tuple[int, int]:
    """The training crop at `iteration`: the first `crop_schedule` stage not yet over, else crop_size."""
    for until, h, w in cfg.crop_schedule:
        if iteration < until * total:
            return int(h), int(w)
    return tuple(cfg.crop_size)
