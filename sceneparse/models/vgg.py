"""VGG feature extractors whose `features.N` indices match torchvision's `vgg16_bn` and `vgg19`.

Only `features` is built (no avgpool/classifier): a torchvision state dict loads once its
`classifier.*` keys are dropped. A layer can be replaced by `nn.Identity` (it keeps its index, so
the numbering and the weight names of later layers do not shift) and convs can be dilated, both
by their index in `features`; this is how PSP-VGG19 removes pool4/pool5 and makes conv4_4 and
conv5_4 atrous while staying loadable from ImageNet weights.
"""
from __future__ import annotations

import torch
from torch import nn


M = "M"
CONFIGS = {
    "vgg16_bn": ([64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M], True),
    "vgg19": ([64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M],
              False),
}


class VGG(nn.Module):
    """`features` of a torchvision VGG.

    identity:  indices in `features` replaced by `nn.Identity` (e.g. pooling layers to drop).
    dilation:  {index of a conv in `features`: rate}; padding follows the rate so sizes are kept.
    ceil_mode: for the 2x2 max pools; True makes every stage `ceil(size / 2)` so a decoder can
               return to any input size.
    """

    def __init__(self, arch: str = "vgg16_bn", identity: tuple[int, ...] = (),
                 dilation: dict[int, int] | None = None, ceil_mode: bool = False):
        super().__init__()
        if arch not in CONFIGS:
            raise ValueError(f"unknown VGG '{arch}' (valid: {', '.join(CONFIGS)})")
        cfg, batch_norm = CONFIGS[arch]
        dilation = dilation or {}
        self.arch = arch
        layers: list[nn.Module] = []
        in_channels = 3
        for v in cfg:
            if v == M:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
                continue
            rate = dilation.get(len(layers), 1)
            layers.append(nn.Conv2d(in_channels, v, 3, padding=rate, dilation=rate))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_channels = v
        for index, rate in dilation.items():
            if not (0 <= index < len(layers) and isinstance(layers[index], nn.Conv2d)):
                raise ValueError(f"{arch}: features.{index} is not a conv, cannot dilate it")
        for index in identity:
            layers[index] = nn.Identity()
        self.features = nn.Sequential(*layers)
        self.out_channels = in_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

