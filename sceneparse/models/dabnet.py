"""DABNet (Li and Kim, BMVC 2019): depth-wise asymmetric bottlenecks for real-time segmentation.

Written from the paper's description. A CPU-first network of about 0.75 M parameters that works at
1/8 resolution with a receptive field from dilations up to 16:

    image -> stem (three 3x3 convs, the first with stride 2)        1/2, 32 ch
          -> concat image/2 -> BN-PReLU -> downsample (conv s2 || max pool)   1/4, 64 ch
          -> 3 DAB modules, dilation 2
          -> concat [DAB output, block input, image/4] -> BN-PReLU -> downsample (conv s2)  1/8, 128 ch
          -> 6 DAB modules, dilations 4, 4, 8, 8, 16, 16
          -> concat [DAB output, block input, image/8] -> BN-PReLU -> 1x1 classifier
          -> bilinear upsampling to the input size

The image is injected at each scale by repeated 3x3/stride-2 average pooling. Every stride-2
operation pads so that it yields ceil(size / 2): any input of 32 pixels or more gives features
whose sizes agree, and the logits are upsampled to the exact input size. Only conv, BN, PReLU,
max/avg pooling, concat and bilinear resize are used, so the network exports to ONNX.

`activation="relu"` swaps every PReLU for ReLU: not the paper's network, but its training step is
about 1.4x faster on one CPU thread (PReLU's backward is a quarter of the step there).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.models.heads import PyramidPooling


def activation_layer(name: str, channels: int) -> nn.Module:
    """"prelu" (one slope per channel, the paper's), "relu", or "" (linear)."""
    if name == "prelu":
        return nn.PReLU(channels)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "":
        return nn.Identity()
    raise ValueError(f"activation must be 'prelu' or 'relu', got {name!r}")


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BN -> activation (`act`: see activation_layer; "" leaves it linear)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, act: str = "prelu"):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        self.conv = nn.Conv2d(in_channels, out_channels, (kh, kw), stride, padding=(dh * (kh // 2), dw * (kw // 2)),
                              dilation=(dh, dw), groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = activation_layer(act, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class BNAct(nn.Module):
    """BN -> activation over a concatenation of feature maps."""

    def __init__(self, channels: int, act: str = "prelu"):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = activation_layer(act, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class DABModule(nn.Module):
    """Depth-wise asymmetric bottleneck: 3x3 conv halves the channels, then two depth-wise branches
    (3x1 then 1x3: local; the same with `dilation`: context) are summed, a linear 1x1 conv restores
    the channels and the input is added back."""

    def __init__(self, channels: int, dilation: int, act: str = "prelu"):
        super().__init__()
        mid = channels // 2
        self.reduce = ConvBNAct(channels, mid, 3, act=act)
        self.local_v = ConvBNAct(mid, mid, (3, 1), groups=mid, act=act)
        self.local_h = ConvBNAct(mid, mid, (1, 3), groups=mid, act=act)
        self.context_v = ConvBNAct(mid, mid, (3, 1), dilation=(dilation, 1), groups=mid, act=act)
        self.context_h = ConvBNAct(mid, mid, (1, 3), dilation=(1, dilation), groups=mid, act=act)
        self.expand = ConvBNAct(mid, channels, 1, act="")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        y = self.local_h(self.local_v(y)) + self.context_h(self.context_v(y))
        return x + self.expand(y)


class Downsample(nn.Module):
    """ENet's downsampling: a 3x3 stride-2 conv, concatenated with 2x2 max pooling of the input
    when the block widens the channels; BN-PReLU after."""

    def __init__(self, in_channels: int, out_channels: int, act: str = "prelu"):
        super().__init__()
        self.pool = in_channels < out_channels
        conv_out = out_channels - in_channels if self.pool else out_channels
        self.conv = nn.Conv2d(in_channels, conv_out, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = activation_layer(act, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.pool:
            y = torch.cat([y, F.max_pool2d(x, 2, 2, ceil_mode=True)], dim=1)
        return self.act(self.bn(y))


def _half(image: torch.Tensor) -> torch.Tensor:
    """Average pooling to ceil(size / 2), the size every stride-2 layer here produces."""
    return F.avg_pool2d(image, 3, stride=2, padding=1)


class DABNetBackbone(nn.Module):
    """DABNet up to its 1/8-resolution features (`out_channels` = 2 * width2 + 3)."""

    def __init__(self, width1: int = 64, width2: int = 128, dilations1: tuple[int, ...] = (2, 2, 2),
                 dilations2: tuple[int, ...] = (4, 4, 8, 8, 16, 16), stem_channels: int = 32, act: str = "prelu"):
        super().__init__()
        for name, width in (("width1", width1), ("width2", width2)):
            if isinstance(width, bool) or not isinstance(width, int) or width < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {width!r}")
        for name, dilations in (("dilations1", dilations1), ("dilations2", dilations2)):
            if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dilations):
                raise ValueError(f"{name} must be positive integers, got {list(dilations)}")
        self.stem = nn.Sequential(ConvBNAct(3, stem_channels, 3, stride=2, act=act),
                                  ConvBNAct(stem_channels, stem_channels, 3, act=act),
                                  ConvBNAct(stem_channels, stem_channels, 3, act=act))
        self.stem_norm = BNAct(stem_channels + 3, act)
        self.down1 = Downsample(stem_channels + 3, width1, act)
        self.block1 = nn.Sequential(*[DABModule(width1, d, act) for d in dilations1])
        self.block1_norm = BNAct(2 * width1 + 3, act)
        self.down2 = Downsample(2 * width1 + 3, width2, act)
        self.block2 = nn.Sequential(*[DABModule(width2, d, act) for d in dilations2])
        self.block2_norm = BNAct(2 * width2 + 3, act)
        self.out_channels = 2 * width2 + 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image2 = _half(x)
        image4 = _half(image2)
        image8 = _half(image4)
        y = self.stem_norm(torch.cat([self.stem(x), image2], dim=1))
        y = self.down1(y)
        y = self.block1_norm(torch.cat([self.block1(y), y, image4], dim=1))
        y = self.down2(y)
        return self.block2_norm(torch.cat([self.block2(y), y, image8], dim=1))


class DABNet(nn.Module):
    """DABNet: `model.backbone` (DABNetBackbone) + a 1x1 classifier, bilinear upsampling x8.

    width1, width2: channels of the 1/4 and 1/8 stages (paper: 64, 128)
    dilations1, dilations2: one DAB module per entry (paper: 2,2,2 and 4,4,8,8,16,16)
    pyramid: add the PSPNet pyramid pooling module (bins 1, 2, 3, 6) before the classifier
    dropout: Dropout2d rate before the classifier (paper: none)
    activation: "prelu" (paper) or "relu" (a faster step on CPU)

    Returns logits (N, num_classes, H, W) in both modes (no auxiliary head).
    """

    def __init__(self, num_classes: int, width1: int = 64, width2: int = 128,
                 dilations1: tuple[int, ...] = (2, 2, 2), dilations2: tuple[int, ...] = (4, 4, 8, 8, 16, 16),
                 pyramid: bool = False, dropout: float = 0.0, activation: str = "prelu"):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = DABNetBackbone(width1, width2, tuple(dilations1), tuple(dilations2), act=activation)
        channels = self.backbone.out_channels
        self.ppm = PyramidPooling(channels, branch_channels=32) if pyramid else None
        if self.ppm is not None:
            channels = self.ppm.out_channels
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y = self.backbone(x)
        if self.ppm is not None:
            y = self.ppm(y)
        y = self.classifier(self.dropout(y))
        return F.interpolate(y, size, mode="bilinear", align_corners=False)

