"""PSPNet (Zhao et al., CVPR 2017): dilated ResNet + pyramid pooling + auxiliary head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.models.heads import FCNHead, PyramidPooling
from sceneparse.models.resnet import ARCHS, ResNet


class PSPNet(nn.Module):
    """PSPNet with a torchvision-named ResNet backbone (`model.backbone`).

    backbone:      resnet18 | resnet34 | resnet50 | resnet101
    bins:          pyramid pooling grid sizes (paper: 1, 2, 3, 6)
    output_stride: 8 (paper: layer3/layer4 dilated 2/4) or 16 (cheaper: only layer4 dilated)
    deep_stem:     three 3x3 convs instead of the 7x7 stem (no torchvision ImageNet weights for it)
    aux:           auxiliary head on layer3; its logits are returned only in training mode
    dropout:       Dropout2d rate before both classifiers

    Eval mode returns logits (N, num_classes, H, W); training mode returns (logits, aux_logits)
    when `aux` is on. Training needs batches of 2 or more: BN after the 1x1 global pooling
    branch has a single value per channel otherwise.
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", bins: tuple[int, ...] = (1, 2, 3, 6),
                 output_stride: int = 8, deep_stem: bool = False, aux: bool = True, dropout: float = 0.1):
        super().__init__()
        if backbone not in ARCHS:
            raise ValueError(f"PSPNet: unknown backbone '{backbone}' (valid: {', '.join(ARCHS)})")
        bins = tuple(bins)
        if not bins or not all(isinstance(b, int) and b >= 1 for b in bins):
            raise ValueError(f"PSPNet: bins must be positive integers, got {list(bins)}")
        self.num_classes = num_classes
        self.backbone = ResNet(backbone, output_stride=output_stride, deep_stem=deep_stem)
        channels = self.backbone.out_channels
        self.ppm = PyramidPooling(channels, bins)
        self.head = FCNHead(self.ppm.out_channels, num_classes, channels=512, dropout=dropout)
        self.aux_head = FCNHead(channels // 2, num_classes, channels=256, dropout=dropout) if aux else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        c3, c4 = self.backbone(x)[-2:]
        out = F.interpolate(self.head(self.ppm(c4)), size, mode="bilinear", align_corners=False)
        if self.training and self.aux_head is not None:
            aux = F.interpolate(self.aux_head(c3), size, mode="bilinear", align_corners=False)
            return out, aux
        return out
