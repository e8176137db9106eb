"""LMFFNet (Shi et al., IEEE TNNLS 2022): a lightweight multiscale-feature-fusion network.

Written from the paper and a reading of the authors' public code (LMFFNet-3-8, 1.35 M parameters,
CamVid 0.691 mIoU from scratch at 360x480). DABNet's layout (stem, image injection, ENet
downsampling, a 1/8 stage of dilated bottlenecks) with three changes: split-extract-merge
bottlenecks (SEM-B) that spend their work in dense 3x3 convolutions, feature fusion modules (FFM)
that reweight each stage's input with a cheap channel attention (PMCA), and a decoder (MAD) that
gates the 1/8 logits with an attention map computed at 1/4 from both stages:

    image -> stem (three 3x3 convs, the first with stride 2)                       1/2, 32 ch
          -> FFM-A: BN-PReLU(concat [stem, image/2]) -> 1x1 conv
          -> downsample (conv s2 || max pool) -> 3 SEM-B, dilation 2                 1/4, 64 ch
          -> FFM-B1: BN-PReLU(concat [SEM-B output, PMCA(block input), image/4]) -> 1x1 conv
          -> downsample (conv s2) -> 8 SEM-B, dilations 4, 4, 8, 8, 16, 16, 32, 32    1/8, 128 ch
          -> FFM-B2 (as FFM-B1, with image/8)                                         1/8, 259 ch
          -> MAD: logits at 1/8 (depth-wise 3x3, 1x1), upsampled to 1/4 and multiplied by
             sigmoid(depth-wise 3x3, 1x1 of concat [1x1(FFM-B1), up(1x1(FFM-B2))])
          -> bilinear upsampling to the input size

Differences from the paper's network: every stride-2 layer yields ceil(size / 2) and the decoder
resizes to the sizes it meets (the paper's code doubles sizes, so it needs multiples of 8); the
logits are bilinearly resized to the exact input size; BN keeps PyTorch's default eps; PMCA's
squeeze-excitation uses one PReLU slope per channel; the decoder's 1x1 classifiers have a bias.
`activation="relu"` (every PReLU becomes ReLU) and `dropout` are options the paper does not have.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.models.dabnet import BNAct, ConvBNAct, Downsample, activation_layer


class SEMB(nn.Module):
    """Split-extract-merge bottleneck: a 3x3 conv halves the channels; one half goes through a
    depth-wise 3x3 conv, the other through a depth-wise 3x3 conv with `dilation`; the halves are
    merged by a 3x3 conv, a linear 1x1 conv restores the channels, the input is added and the sum
    goes through BN-PReLU."""

    def __init__(self, channels: int, dilation: int, act: str = "prelu"):
        super().__init__()
        half, quarter = channels // 2, channels // 4
        self.reduce = ConvBNAct(channels, half, 3, act=act)
        self.local = ConvBNAct(quarter, quarter, 3, groups=quarter, act=act)
        self.context = ConvBNAct(quarter, quarter, 3, dilation=dilation, groups=quarter, act=act)
        self.merge = ConvBNAct(half, half, 3, act=act)
        self.expand = nn.Conv2d(half, channels, 1, bias=False)
        self.norm = BNAct(channels, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local, context = self.reduce(x).chunk(2, dim=1)
        y = torch.cat([self.local(local), self.context(context)], dim=1)
        return self.norm(x + self.expand(self.merge(y)))


class PMCA(nn.Module):
    """Partition-merge channel attention: the 2x2 grid of average pools, merged per channel by a
    depth-wise 2x2 conv, plus the global average, feeds a squeeze-excitation (reduction 8) whose
    sigmoid weights scale the input's channels."""

    def __init__(self, channels: int, reduction: int = 8, act: str = "prelu"):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.partition = nn.Conv2d(channels, channels, 2, groups=channels, bias=False)
        self.squeeze = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act = activation_layer(act, hidden)
        self.excite = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.partition(F.adaptive_avg_pool2d(x, 2)) + x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.excite(self.act(self.squeeze(pooled))))


class FFM(nn.Module):
    """Feature fusion: BN-PReLU over a concatenation, then a linear 1x1 conv (same channels)."""

    def __init__(self, channels: int, act: str = "prelu"):
        super().__init__()
        self.norm = BNAct(channels, act)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(torch.cat(features, dim=1)))


class MAD(nn.Module):
    """Multiscale attention decoder: 1/8 logits, upsampled to 1/4 and gated by an attention map
    computed from both scales (`mid` at 1/4, `deep` at 1/8)."""

    def __init__(self, mid_channels: int, deep_channels: int, num_classes: int, mid_width: int = 16,
                 deep_width: int = 32, act: str = "prelu"):
        super().__init__()
        width = mid_width + deep_width
        self.mid = nn.Conv2d(mid_channels, mid_width, 1, bias=False)
        self.deep = nn.Conv2d(deep_channels, deep_width, 1, bias=False)
        self.attention = nn.Sequential(ConvBNAct(width, width, 3, groups=width, act=act),
                                       nn.Conv2d(width, num_classes, 1))
        self.classifier = nn.Sequential(ConvBNAct(deep_channels, deep_channels, 3, groups=deep_channels, act=act),
                                        nn.Conv2d(deep_channels, num_classes, 1))

    def forward(self, mid: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        size = mid.shape[-2:]
        context = F.interpolate(self.deep(deep), size, mode="bilinear", align_corners=False)
        attention = torch.sigmoid(self.attention(torch.cat([self.mid(mid), context], dim=1)))
        logits = F.interpolate(self.classifier(deep), size, mode="bilinear", align_corners=False)
        return logits * attention


def _half(image: torch.Tensor) -> torch.Tensor:
    """Average pooling to ceil(size / 2), the size every stride-2 layer here produces."""
    return F.avg_pool2d(image, 3, stride=2, padding=1)


class LMFFNet(nn.Module):
    """LMFFNet-3-8 by default; no auxiliary head, logits (N, num_classes, H, W) in both modes.

    width1, width2: channels of the 1/4 and 1/8 stages (paper: 64, 128; multiples of 4)
    dilations1, dilations2: one SEM-B block per entry (paper: 2,2,2 and 4,4,8,8,16,16,32,32)
    dropout: Dropout2d rate on the 1/8 features before the decoder (paper: none)
    activation: "prelu" (paper) or "relu"
    """

    aux_head = None

    def __init__(self, num_classes: int, width1: int = 64, width2: int = 128,
                 dilations1: tuple[int, ...] = (2, 2, 2), dilations2: tuple[int, ...] = (4, 4, 8, 8, 16, 16, 32, 32),
                 dropout: float = 0.0, activation: str = "prelu"):
        super().__init__()
        for name, width in (("width1", width1), ("width2", width2)):
            if isinstance(width, bool) or not isinstance(width, int) or width < 4 or width % 4:
                raise ValueError(f"{name} must be a positive multiple of 4, got {width!r}")
        dilations1, dilations2 = tuple(dilations1), tuple(dilations2)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dilations1 + dilations2):
            raise ValueError(f"dilations must be positive integers, got {dilations1} and {dilations2}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        activation_layer(activation, 1)  # raises ValueError for an unknown name
        act = activation
        self.num_classes = num_classes
        stem = 32
        self.stem = nn.Sequential(ConvBNAct(3, stem, 3, stride=2, act=act), ConvBNAct(stem, stem, 3, act=act),
                                  ConvBNAct(stem, stem, 3, act=act))
        self.ffm_a = FFM(stem + 3, act)
        self.down1 = Downsample(stem + 3, width1, act)
        self.block1 = nn.Sequential(*[SEMB(width1, d, act) for d in dilations1])
        self.pmca1 = PMCA(width1, act=act)
        self.ffm_b1 = FFM(2 * width1 + 3, act)
        self.down2 = Downsample(2 * width1 + 3, width2, act)
        self.block2 = nn.Sequential(*[SEMB(width2, d, act) for d in dilations2])
        self.pmca2 = PMCA(width2, act=act)
        self.ffm_b2 = FFM(2 * width2 + 3, act)
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.decoder = MAD(2 * width1 + 3, 2 * width2 + 3, num_classes, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        image2 = _half(x)
        image4 = _half(image2)
        image8 = _half(image4)
        y = self.down1(self.ffm_a(self.stem(x), image2))
        mid = self.ffm_b1(self.block1(y), self.pmca1(y), image4)
        y = self.down2(mid)
        deep = self.dropout(self.ffm_b2(self.block2(y), self.pmca2(y), image8))
        return F.interpolate(self.decoder(mid, deep), size, mode="bilinear", align_corners=False)
