"""PSP-VGG19: atrous VGG19 encoder, pyramid max pooling, transposed-conv decoder.

Follows the layer table of the TensorFlow system it reproduces:
  encoder  VGG19 convs with pool4/pool5 removed (output stride 8), conv4_4 atrous rate 2,
           conv5_4 atrous rate 4; torchvision `vgg19.features` names and indices (the removed
           pools become `nn.Identity` at features.27 and features.36), so ImageNet weights load
  PSP      max pooling to 1, 2, 3, 6; 1x1 conv to 64 + LeakyReLU each, BN on the 2 and 6 branches
           only (as the table says); bilinear up to 1/8; 1x1 conv 256 + BN + LeakyReLU of the
           encoder output; concat (the table lists Upsample7_3 twice, an evident typo: we use all
           four branches); 1x1 conv 512 + BN + LeakyReLU
  decoder  three 3x3 stride-2 transposed convs (128, 128, 64) + BN + LeakyReLU, 3x3 conv 64 +
           LeakyReLU, 3x3 conv to the class logits
LeakyReLU slope 0.2 (TensorFlow's default, that system's framework).

Any input size: the encoder pools use ceil mode, so each stage is ceil(size / 2); each transposed
conv doubles its input and is cropped to the size the encoder had before the matching pool.
"""
from __future__ import annotations

import torch
from torch import nn

from sceneparse.models.heads import PyramidPooling
from sceneparse.models.vgg import VGG

SLOPE = 0.2


def _act() -> nn.Module:
    return nn.LeakyReLU(SLOPE, inplace=True)


class PSPVGG19(nn.Module):
    """Seed 004's network; `model.backbone.features` holds the VGG19 encoder."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = VGG("vgg19", identity=(27, 36), dilation={25: 2, 34: 4}, ceil_mode=True)
        self.ppm = PyramidPooling(512, (1, 2, 3, 6), branch_channels=64, mode="max",
                                  batch_norm=(False, True, False, True), negative_slope=SLOPE, include_input=False)
        self.reduce = nn.Sequential(nn.Conv2d(512, 256, 1, bias=False), nn.BatchNorm2d(256), _act())
        self.fuse = nn.Sequential(nn.Conv2d(self.ppm.out_channels + 256, 512, 1, bias=False),
                                  nn.BatchNorm2d(512), _act())
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(i, o, 3, stride=2, padding=1, output_padding=1, bias=False)
            for i, o in ((512, 128), (128, 128), (128, 64)))
        self.up_bn = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(c), _act()) for c in (128, 128, 64))
        self.conv = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), _act())
        self.classifier = nn.Conv2d(64, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = []  # encoder sizes before each remaining pool: full, 1/2, 1/4
        for layer in self.backbone.features:
            if isinstance(layer, nn.MaxPool2d):
                sizes.append(x.shape[-2:])
            x = layer(x)
        x = self.fuse(torch.cat([self.ppm(x), self.reduce(x)], dim=1))
        for up, post, (h, w) in zip(self.up, self.up_bn, reversed(sizes), strict=True):
            x = post(up(x)[..., :h, :w])
        return self.classifier(self.conv(x))
