"""FBSNet (Gao et al., IEEE TMM 2022): a fast bilateral symmetrical network.

Written from the paper and a reading of the authors' public code (0.62 M parameters, CamVid 0.689
mIoU from scratch at 360x480). A symmetric encoder-decoder of bilateral residual units (BRU) for
semantics, beside a branch of three dense 3x3 convolutions at 1/2 for spatial detail:

    image -> stem (three 3x3 convs, the first with stride 2)                     1/2, 16 ch
          -> ECA -> 5 BRU, dilation 1 -> BN-PReLU -> ECA                         1/2, 16 ch
          -> downsample (conv s2 || max pool) -> 5 BRU, dilations 1, 2, 5, 9, 17 1/4, 64 ch
          -> downsample (conv s2 || max pool) -> 16 BRU, dilations 1-17          1/8, 128 ch
          -> 3x3 transposed conv x2 -> 3 BRU                                     1/4, 64 ch
          -> 3x3 transposed conv x2 -> 3 BRU                                     1/2, 32 ch
          -> + detail branch (stem -> 3x3 convs 32, 128, 32 -> spatial attention)
          -> BN-PReLU -> coordinate attention -> 2x2 transposed conv x2 to the classes

(every stage ends BN-PReLU -> ECA). A BRU halves the channels with a 1x1 conv, runs a local
branch (depth-wise 3x1, 1x3, ECA, 1x3, 3x1) and a context branch (the same, dilated), sums both
with their midpoints and the (attended) bottleneck input, restores the channels with a linear
1x1 conv and ECA, adds the input back and shuffles the channels.

Differences from the authors' network: every stride-2 layer yields ceil(size / 2) and each
transposed conv's output is cropped to the size it meets, so any input of 32 pixels or more
works and the logits have the exact input size; the detail branch multiplies its features by
its spatial attention map (the authors' code adds the map alone, which leaves the branch's
convolutions without effect beyond one channel's worth of signal); BN keeps PyTorch's default
eps. `activation="relu"` (every PReLU becomes ReLU) is an option the paper does not have.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.models.dabnet import BNAct, ConvBNAct, Downsample, activation_layer


class ECA(nn.Module):
    """Efficient channel attention: the channels' global averages, mixed along the channel axis by
    a 1-D conv of width 3, give sigmoid weights that scale the channels (one parameter set of 3)."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.conv(x.mean((2, 3))[:, None, :])[:, 0, :]
        return x * torch.sigmoid(weights)[:, :, None, None]


def _asymmetric(channels: int, dilation: int, act: str, vertical_first: bool) -> nn.Sequential:
    """Two depth-wise convs, 3x1 and 1x3 (in that order when `vertical_first`), with `dilation`."""
    vertical = ConvBNAct(channels, channels, (3, 1), dilation=(dilation, 1), groups=channels, act=act)
    horizontal = ConvBNAct(channels, channels, (1, 3), dilation=(1, dilation), groups=channels, act=act)
    return nn.Sequential(vertical, horizontal) if vertical_first else nn.Sequential(horizontal, vertical)


class BRU(nn.Module):
    """Bilateral residual unit: see the module docstring."""

    def __init__(self, channels: int, dilation: int, act: str = "prelu"):
        super().__init__()
        mid = channels // 2
        self.norm_in = BNAct(channels, act)
        self.reduce = ConvBNAct(channels, mid, 1, act=act)
        self.reduce_eca = ECA()
        self.local1 = _asymmetric(mid, 1, act, vertical_first=True)
        self.local_eca = ECA()
        self.local2 = _asymmetric(mid, 1, act, vertical_first=False)
        self.context1 = _asymmetric(mid, dilation, act, vertical_first=True)
        self.context_eca = ECA()
        self.context2 = _asymmetric(mid, dilation, act, vertical_first=False)
        self.norm_mid = BNAct(mid, act)
        self.expand = nn.Conv2d(mid, channels, 1, bias=False)
        self.out_eca = ECA()
        self.shuffle_groups = mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.norm_in(x))
        local = self.local_eca(self.local1(y))
        context = self.context_eca(self.context1(y))
        y = self.local2(local) + self.context2(context) + local + context + self.reduce_eca(y)
        y = self.out_eca(self.expand(self.norm_mid(y)))
        return _channel_shuffle(x + y, self.shuffle_groups)


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: channel g * (C / groups) + i moves to i * groups + g."""
    n, c, h, w = x.shape
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    y = x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
    return y.contiguous(memory_format=torch.channels_last) if channels_last else y


class Stage(nn.Module):
    """BRUs, one per dilation, then BN-PReLU and ECA."""

    def __init__(self, channels: int, dilations: tuple[int, ...], act: str):
        super().__init__()
        self.blocks = nn.Sequential(*[BRU(channels, d, act) for d in dilations])
        self.norm = BNAct(channels, act)
        self.eca = ECA()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eca(self.norm(self.blocks(x)))


class Upsample(nn.Module):
    """3x3 transposed conv with stride 2 -> BN -> ReLU6, cropped to the size of the skip level."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)[..., :size[0], :size[1]]))


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: a 7x7 conv over the channel mean and max gives a sigmoid map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou et al., 2021): averages along each row and each column, squeezed
    together by a 1x1 conv, give one sigmoid weight per channel and row and per channel and column."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.squeeze = nn.Conv2d(channels, hidden, 1, bias=False)  # BN follows
        self.bn = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.excite_h = nn.Conv2d(hidden, channels, 1)
        self.excite_w = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-2]
        pooled = torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], dim=2)
        y = self.act(self.bn(self.squeeze(pooled)))
        rows, cols = y[:, :, :h], y[:, :, h:].transpose(2, 3)
        return x * torch.sigmoid(self.excite_h(rows)) * torch.sigmoid(self.excite_w(cols))


class FBSNet(nn.Module):
    """FBSNet; no auxiliary head, logits (N, num_classes, H, W) in both modes.

    dilations1, dilations2, dilations3: one BRU per entry at 1/2, 1/4 and 1/8 (paper: five 1s;
        1, 2, 5, 9, 17; 1, 2, 5, 9 twice then 2, 5, 9, 17 twice)
    decoder_blocks: BRUs after each of the two upsamplings (paper: 3)
    activation: "prelu" (paper) or "relu"
    """

    aux_head = None

    def __init__(self, num_classes: int, dilations1: tuple[int, ...] = (1, 1, 1, 1, 1),
                 dilations2: tuple[int, ...] = (1, 2, 5, 9, 17),
                 dilations3: tuple[int, ...] = (1, 2, 5, 9, 1, 2, 5, 9, 2, 5, 9, 17, 2, 5, 9, 17),
                 decoder_blocks: int = 3, activation: str = "prelu"):
        super().__init__()
        dilations1, dilations2, dilations3 = tuple(dilations1), tuple(dilations2), tuple(dilations3)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                   for d in dilations1 + dilations2 + dilations3):
            raise ValueError(f"dilations must be positive integers, got {dilations1}, {dilations2} and {dilations3}")
        if isinstance(decoder_blocks, bool) or not isinstance(decoder_blocks, int) or decoder_blocks < 0:
            raise ValueError(f"decoder_blocks must be a non-negative integer, got {decoder_blocks!r}")
        activation_layer(activation, 1)  # raises ValueError for an unknown name
        act = activation
        self.num_classes = num_classes
        self.stem = nn.Sequential(ConvBNAct(3, 16, 3, stride=2, act=act), ConvBNAct(16, 16, 3, act=act),
                                  ConvBNAct(16, 16, 3, act=act), BNAct(16, act))
        self.stem_eca = ECA()
        self.stage1 = Stage(16, dilations1, act)
        self.down1 = Downsample(16, 64, act)
        self.stage2 = Stage(64, dilations2, act)
        self.down2 = Downsample(64, 128, act)
        self.stage3 = Stage(128, dilations3, act)
        self.up1 = Upsample(128, 64)
        self.stage4 = Stage(64, (1,) * decoder_blocks, act)
        self.up2 = Upsample(64, 32)
        self.stage5 = Stage(32, (1,) * decoder_blocks, act)
        self.detail = nn.Sequential(ConvBNAct(16, 32, 3, act=act), ConvBNAct(32, 128, 3, act=act),
                                    ConvBNAct(128, 32, 3, act=act), SpatialAttention())
        self.fuse = BNAct(32, act)
        self.attention = CoordinateAttention(32)
        self.classifier = nn.ConvTranspose2d(32, num_classes, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        stem = self.stem(x)
        y2 = self.stage1(self.stem_eca(stem))
        y4 = self.stage2(self.down1(y2))
        y = self.stage3(self.down2(y4))
        y = self.stage4(self.up1(y, y4.shape[-2:]))
        y = self.stage5(self.up2(y, y2.shape[-2:]))
        y = self.attention(self.fuse(y + self.detail(stem)))
        return self.classifier(y)[..., :size[0], :size[1]]
