"""Heads shared by the networks: the pyramid pooling module and the FCN conv head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module.

    Each branch pools the input to a `bin x bin` grid (adaptive, so any feature size works, also
    when it is not divisible by the bin; `sceneparse.export` keeps that exact in ONNX at any size),
    applies a 1x1 conv to `branch_channels` (default `in_channels // len(bins)`), optional BN, then
    ReLU (LeakyReLU when `negative_slope > 0`), and is upsampled bilinearly (align_corners=False)
    back to the input size.
    The output is the input concatenated with every branch (`include_input=True`, the paper) or
    only the branches.

    mode:       "avg" (PSPNet) or "max" (PSP-VGG19).
    batch_norm: one flag per bin, or a single flag for all.
    """

    def __init__(self, in_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6), branch_channels: int | None = None,
                 mode: str = "avg", batch_norm: bool | tuple[bool, ...] = True, negative_slope: float = 0.0,
                 include_input: bool = True):
        super().__init__()
        bins = tuple(int(b) for b in bins)
        if not bins or min(bins) < 1:
            raise ValueError(f"pyramid pooling bins must be positive integers, got {bins}")
        if mode not in ("avg", "max"):
            raise ValueError(f"pyramid pooling mode must be 'avg' or 'max', got {mode!r}")
        norms = (batch_norm,) * len(bins) if isinstance(batch_norm, bool) else tuple(batch_norm)
        branch_channels = branch_channels or in_channels // len(bins)
        self.bins = bins
        self.include_input = include_input
        self.out_channels = len(bins) * branch_channels + (in_channels if include_input else 0)
        self.branches = nn.ModuleList()
        for b, norm in zip(bins, norms, strict=True):
            pool = nn.AdaptiveAvgPool2d(b) if mode == "avg" else nn.AdaptiveMaxPool2d(b)
            layers = [pool, nn.Conv2d(in_channels, branch_channels, 1, bias=not norm)]
            if norm:
                layers.append(nn.BatchNorm2d(branch_channels))
            layers.append(nn.LeakyReLU(negative_slope, inplace=True) if negative_slope else nn.ReLU(inplace=True))
            self.branches.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x] if self.include_input else []
        outs += [F.interpolate(branch(x), size, mode="bilinear", align_corners=False) for branch in self.branches]
        return torch.cat(outs, dim=1)


class FCNHead(nn.Module):
    """3x3 conv -> BN -> ReLU -> Dropout2d -> 1x1 classifier (torchvision's FCNHead).

    PSPNet uses it twice: as the main head (512 channels) and as the auxiliary head on layer3
    (256 channels, deep supervision during training).
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, dropout: float = 0.1):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)
