"""SegNet (Badrinarayanan et al., TPAMI 2017): encoder-decoder with max-pooling indices.

The encoder's 2x2 max pools keep the argmax of each window; the decoder puts every value back at
that position (zeros elsewhere) and densifies with conv-BN(-ReLU) stacks. Unpooling targets the
size the encoder had before pooling, so odd input sizes come back exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.models.vgg import VGG


def max_pool(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2, stride 2 max pooling returning the flat argmax index (within each H*W plane)."""
    return F.max_pool2d(x, 2, 2, return_indices=True)


def unpool(x: torch.Tensor, indices: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Inverse of `max_pool`: scatter `x` to `indices` in a zero map of spatial `size`.

    Same result as `F.max_unpool2d(x, indices, 2, 2, output_size=size)`, written as a scatter so it
    also exports to ONNX (ScatterElements), which `max_unpool2d` does not with the legacy exporter.
    """
    n, c = x.shape[:2]
    out = x.new_zeros(n, c, size[0] * size[1])
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(n, c, size[0], size[1])


def _conv_bn(in_channels: int, out_channels: int, kernel: int = 3, relu: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
              nn.BatchNorm2d(out_channels)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


# (convs, width) of the five VGG16 stages
_STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


class SegNet(nn.Module):
    """SegNet with a VGG16-BN encoder (`model.backbone.features`, torchvision `vgg16_bn` names).

    The decoder mirrors the 13 encoder convs: each stage unpools, then runs as many 3x3
    conv-BN-ReLU as its encoder stage, the last one narrowing to the previous stage's width;
    a 1x1 conv gives the class logits.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = VGG("vgg16_bn")
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(_STAGES))):
            convs, width = _STAGES[i]
            out_width = _STAGES[i - 1][1] if i > 0 else width
            layers = []
            for j in range(convs):
                layers += _conv_bn(width, out_width if j == convs - 1 else width)
            self.decoder.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(_STAGES[0][1], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []  # (indices, size before pooling) per stage
        for layer in self.backbone.features:
            if isinstance(layer, nn.MaxPool2d):
                size = x.shape[-2:]
                x, indices = max_pool(x)
                pooled.append((indices, size))
            else:
                x = layer(x)
        for stage, (indices, size) in zip(self.decoder, reversed(pooled), strict=True):
            x = stage(unpool(x, indices, size))
        return self.classifier(x)


class SegNetBasic(nn.Module):
    """SegNet-Basic from the SegNet paper: 4 encoders and 4 decoders of one 7x7 conv with 64 channels.

    Encoders are conv-BN-ReLU + 2x2 max pooling with indices; decoders are unpool + conv-BN with no
    ReLU, as in the paper; a 1x1 conv gives the logits. About 1.4 M parameters: a fast CPU baseline.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.encoder = nn.ModuleList(nn.Sequential(*_conv_bn(3 if i == 0 else 64, 64, 7)) for i in range(4))
        self.decoder = nn.ModuleList(nn.Sequential(*_conv_bn(64, 64, 7, relu=False)) for _ in range(4))
        self.classifier = nn.Conv2d(64, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for stage in self.encoder:
            x = stage(x)
            size = x.shape[-2:]
            x, indices = max_pool(x)
            pooled.append((indices, size))
        for stage, (indices, size) in zip(self.decoder, reversed(pooled), strict=True):
            x = stage(unpool(x, indices, size))
        return self.classifier(x)
