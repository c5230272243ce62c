"""BN-Inception, often called Inception v2 (Ioffe & Szegedy 2015): GoogLeNet with batch normalization
and every 5x5 convolution replaced by two stacked 3x3 convolutions."""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.layers import BasicConv2d
from edgecnn.registry import register_model

__all__ = ["InceptionBlock", "ReductionBlock", "BNInception", "inception_v2"]

PAPER = (
    "Ioffe & Szegedy 2015, Batch Normalization: Accelerating Deep Network Training by Reducing Internal "
    "Covariate Shift (arXiv 1502.03167)"
)


class InceptionBlock(nn.Module):
    """Stride-1 module: 1x1, 1x1 -> 3x3, 1x1 -> 3x3 -> 3x3, and pool -> 1x1 projection branches."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch3x3dbl_red: int,
        ch3x3dbl: int,
        pool: str,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3dbl_red, kernel_size=1),
            BasicConv2d(ch3x3dbl_red, ch3x3dbl, kernel_size=3, padding=1),
            BasicConv2d(ch3x3dbl, ch3x3dbl, kernel_size=3, padding=1),
        )
        pooling = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
        self.branch4 = nn.Sequential(
            pooling(kernel_size=3, stride=1, padding=1), BasicConv2d(in_channels, pool_proj, kernel_size=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class ReductionBlock(nn.Module):
    """Stride-2 module (3c, 4e): 1x1 -> 3x3/2, 1x1 -> 3x3 -> 3x3/2, and a 3x3/2 max pool passed through."""

    def __init__(self, in_channels: int, ch3x3red: int, ch3x3: int, ch3x3dbl_red: int, ch3x3dbl: int) -> None:
        super().__init__()
        self.branch1 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, stride=2, padding=1),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3dbl_red, kernel_size=1),
            BasicConv2d(ch3x3dbl_red, ch3x3dbl, kernel_size=3, padding=1),
            BasicConv2d(ch3x3dbl, ch3x3dbl, kernel_size=3, stride=2, padding=1),
        )
        self.branch3 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class BNInception(nn.Module):
    """BN-Inception: the paper's Table 1 network, a 7x7 stem, ten Inception modules, global pool, classifier."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # in_channels, #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, pool proj
        self.inception3a = InceptionBlock(192, 64, 64, 64, 64, 96, "avg", 32)
        self.inception3b = InceptionBlock(256, 64, 64, 96, 64, 96, "avg", 64)
        # in_channels, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3
        self.inception3c = ReductionBlock(320, 128, 160, 64, 96)
        self.inception4a = InceptionBlock(576, 224, 64, 96, 96, 128, "avg", 128)
        self.inception4b = InceptionBlock(576, 192, 96, 128, 96, 128, "avg", 128)
        self.inception4c = InceptionBlock(576, 160, 128, 160, 128, 160, "avg", 128)
        self.inception4d = InceptionBlock(608, 96, 128, 192, 160, 192, "avg", 128)
        self.inception4e = ReductionBlock(608, 128, 192, 192, 256)
        self.inception5a = InceptionBlock(1056, 352, 192, 320, 160, 224, "avg", 128)
        self.inception5b = InceptionBlock(1024, 352, 192, 320, 192, 224, "max", 128)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.inception3c(self.inception3b(self.inception3a(x)))
        x = self.inception4c(self.inception4b(self.inception4a(x)))
        x = self.inception4e(self.inception4d(x))
        x = self.inception5b(self.inception5a(x))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


@register_model(family="inception", paper=PAPER, min_input_size=7)
def inception_v2(*, num_classes: int = 1000, **kwargs) -> BNInception:
    """BN-Inception (Inception v2): GoogLeNet with batch norm and 5x5 convolutions as two 3x3s (11.3M params).

    Configuration: the paper's Table 1 (Ioffe & Szegedy 2015, arXiv 1502.03167, Appendix), layer for
    layer as in the widely used "bninception" port (Cadene/pretrained-models.pytorch): 7x7/2 stem,
    modules 3a-3c, 4a-4e, 5a-5b with average pooling except the max pools of 3c, 4e and 5b, no
    auxiliary heads. Differences from that port: BasicConv2d units (bias-free conv, BatchNorm eps=1e-3)
    and padded 3x3/2 max pools in 3c/4e, so that odd feature-map sizes concatenate; global average pool.
    """
    return BNInception(num_classes=num_classes, **kwargs)
