"""Xception (Chollet 2017), module for module as timm's ``legacy_xception`` (the Keras port by Cadene)."""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.registry import register_model

__all__ = ["SeparableConv2d", "Block", "Xception", "xception"]

PAPER = "Chollet 2017, Xception: Deep Learning with Depthwise Separable Convolutions (arXiv 1610.02357)"


class SeparableConv2d(nn.Module):
    """Depthwise convolution ``conv1`` followed by a pointwise 1x1 ``pointwise``, both bias-free."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """``reps`` x (ReLU -> separable 3x3 -> BN), then a 3x3/2 max pool when strided, plus a residual.

    The residual is a strided 1x1 conv + BN when the shape changes. ``grow_first`` widens at the first
    separable conv (entry flow) rather than the last (exit flow); ``start_with_relu=False`` drops the
    leading ReLU (the first entry-flow block, which follows a ReLU already).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        reps: int,
        stride: int = 1,
        start_with_relu: bool = True,
        grow_first: bool = True,
    ) -> None:
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(out_channels)
        else:
            self.skip = None

        layers: list[nn.Module] = []
        for i in range(reps):
            if grow_first:
                inc, outc = (in_channels if i == 0 else out_channels), out_channels
            else:
                inc, outc = in_channels, (in_channels if i < reps - 1 else out_channels)
            layers += [nn.ReLU(), SeparableConv2d(inc, outc, 3, stride=1, padding=1), nn.BatchNorm2d(outc)]
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.skip is None else self.skipbn(self.skip(x))
        return self.rep(x) + skip


class Xception(nn.Module):
    """Xception: entry flow (stem, 3 strided blocks), middle flow (8 blocks at 728), exit flow, classifier.

    Attribute names follow timm's ``legacy_xception`` checkpoints (``conv1``..``conv4``, ``block1``..``block12``,
    ``fc``).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.act2 = nn.ReLU(inplace=True)

        self.block1 = Block(64, 128, 2, 2, start_with_relu=False)
        self.block2 = Block(128, 256, 2, 2)
        self.block3 = Block(256, 728, 2, 2)

        self.block4 = Block(728, 728, 3, 1)
        self.block5 = Block(728, 728, 3, 1)
        self.block6 = Block(728, 728, 3, 1)
        self.block7 = Block(728, 728, 3, 1)
        self.block8 = Block(728, 728, 3, 1)
        self.block9 = Block(728, 728, 3, 1)
        self.block10 = Block(728, 728, 3, 1)
        self.block11 = Block(728, 728, 3, 1)

        self.block12 = Block(728, 1024, 2, 2, grow_first=False)

        self.conv3 = SeparableConv2d(1024, 1536, 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(1536)
        self.act3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(1536, 2048, 3, 1, 1)
        self.bn4 = nn.BatchNorm2d(2048)
        self.act4 = nn.ReLU(inplace=True)

        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.block3(self.block2(self.block1(x)))
        x = self.block7(self.block6(self.block5(self.block4(x))))
        x = self.block11(self.block10(self.block9(self.block8(x))))
        x = self.block12(x)
        x = self.act3(self.bn3(self.conv3(x)))
        x = self.act4(self.bn4(self.conv4(x)))
        return self.fc(self.dropout(torch.flatten(self.global_pool(x), 1)))


@register_model(
    family="xception",
    paper=PAPER,
    input_size=299,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    tags=("heavy",),
    min_input_size=7,
)
def xception(*, num_classes: int = 1000, **kwargs) -> Xception:
    """Xception at 299x299 (22.9M parameters), layer for layer as timm's ``legacy_xception``.

    That is the Keras ImageNet model ported by Cadene: 8 middle-flow blocks, BatchNorm eps 1e-5,
    inputs scaled by mean = std = (0.5, 0.5, 0.5) as timm's config says.
    """
    return Xception(num_classes=num_classes, **kwargs)
