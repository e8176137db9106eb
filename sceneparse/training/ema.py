"""An exponential moving average of the weights, evaluated and saved in place of the raw ones."""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """Exponential moving average of a model's floating-point parameters and buffers (BatchNorm
    statistics included; integer buffers are copied). The decay ramps up as min(decay,
    (1 + step) / (10 + step)) so that the early, random weights fade quickly."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for avg, now in self._pairs:
            if avg.is_floating_point():
                avg.lerp_(now, 1 - decay)
            else:
                avg.copy_(now)
