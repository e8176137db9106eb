"""The "simple PSPNet" of a Keras tutorial on the pix2pix Cityscapes pairs, as a per-pixel classifier.

Three residual blocks at full input resolution (no downsampling) with dilated 3x3 convs, then
pyramid pooling the way that Keras code does it: global average pooling plus
`AveragePooling2D(pool_size=w)` with windows w = 2, 4, 8 (stride = window, so the grid follows the
feature size, unlike PSPNet's fixed bins), a 1x1 conv to 64 on each, bilinear upsampling, and
concatenation with the block features. A 3x3 conv on the 512 concatenated maps gives the class
logits; the original's sigmoid over RGB with an MSE loss becomes softmax cross-entropy over classes.

Differences from the Keras code, chosen so any size works: the pools use ceil mode (the last
partial window is averaged over the pixels it covers instead of being dropped), and upsampling
goes to the exact feature size instead of multiplying by the window.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



class ResidualBlock(nn.Module):
    """Seed block: 1x1 -> dilated 3x3 (rate 2) -> 1x1, plus a 3x3 conv skip; BN everywhere, LeakyReLU 0.2."""

    def __init__(self, in_channels: int, filters: tuple[int, int, int]):
        super().__init__()
        f1, f2, f3 = filters
        self.a = nn.Sequential(nn.Conv2d(in_channels, f1, 1, bias=False), nn.BatchNorm2d(f1),
                               nn.LeakyReLU(0.2, inplace=True))
        self.b = nn.Sequential(nn.Conv2d(f1, f2, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(f2),
                               nn.LeakyReLU(0.2, inplace=True))
        self.c = nn.Sequential(nn.Conv2d(f2, f3, 1, bias=False), nn.BatchNorm2d(f3))
        self.skip = nn.Sequential(nn.Conv2d(in_channels, f3, 3, padding=1, bias=False), nn.BatchNorm2d(f3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.c(self.b(self.a(x))) + self.skip(x))


class WindowPyramidPooling(nn.Module):
    """Global average pooling plus average pooling with fixed windows (Keras `pool_size` semantics).

    Branch outputs (1x1 conv to `branch_channels`, linear as in the seed) are upsampled bilinearly
    to the input size and concatenated after the input.
    """

    def __init__(self, in_channels: int, windows: tuple[int, ...] = (2, 4, 8), branch_channels: int = 64):
        super().__init__()
        self.windows = tuple(windows)
        pools = [nn.AdaptiveAvgPool2d(1)] + [nn.AvgPool2d(w, w, ceil_mode=True) for w in self.windows]
        self.branches = nn.ModuleList(nn.Sequential(pool, nn.Conv2d(in_channels, branch_channels, 1))
                                      for pool in pools)
        self.out_channels = in_channels + len(pools) * branch_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [F.interpolate(branch(x), size, mode="bilinear", align_corners=False) for branch in self.branches]
        return torch.cat([x] + outs, dim=1)


class PSPNetLite(nn.Module):
    """3 full-resolution residual blocks (64/128/256 maps) + window pyramid pooling.

    Light in parameters (about 0.8 M) but not in compute: every layer runs at full resolution.
    `width` scales every layer (32 = the original's filters; 8 gives a 16x cheaper model for tests
    and the demo).
    """

    def __init__(self, num_classes: int, windows: tuple[int, ...] = (2, 4, 8), width: int = 32):
        super().__init__()
        windows = tuple(windows)
        if not windows or not all(isinstance(w, int) and w >= 1 for w in windows):
            raise ValueError(f"pspnet_lite: windows must be positive integers, got {list(windows)}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"pspnet_lite: width must be a positive integer, got {width!r}")
        self.num_classes = num_classes
        w = width
        self.blocks = nn.Sequential(
            ResidualBlock(3, (w, w, 2 * w)),
            ResidualBlock(2 * w, (2 * w, 2 * w, 4 * w)),
            ResidualBlock(4 * w, (4 * w, 4 * w, 8 * w)),
        )
        self.ppm = WindowPyramidPooling(8 * w, windows, branch_channels=2 * w)
        self.classifier = nn.Conv2d(self.ppm.out_channels, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.ppm(self.blocks(x)))
