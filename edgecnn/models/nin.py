"""Network in Network (Lin et al. 2013), the ImageNet model: mlpconv blocks and a global average pooling head."""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.registry import register_model

__all__ = ["MLPConv", "NIN", "nin"]

PAPER = "Lin et al. 2013, Network in network (arXiv 1312.4400, ICLR 2014)"


class MLPConv(nn.Sequential):
    """An mlpconv block: a spatial convolution followed by two 1x1 convolutions (the "micro MLP"), each with ReLU."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        out_channels: int | None = None,
    ) -> None:
        out_channels = channels if out_channels is None else out_channels
        super().__init__(
            nn.Conv2d(in_channels, channels, kernel_size, stride=stride, padding=padding),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, out_channels, kernel_size=1),
            nn.ReLU(inplace=True),
        )


class NIN(nn.Module):
    """NIN for ImageNet: three mlpconv blocks with 3x3/2 max pools, then a class-producing mlpconv and global
    average pooling."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            MLPConv(3, 96, kernel_size=11, stride=4),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            MLPConv(96, 256, kernel_size=5, padding=2),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            MLPConv(256, 384, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            nn.Dropout(p=dropout),
        )
        self.classifier = nn.Sequential(
            MLPConv(384, 1024, kernel_size=3, padding=1, out_channels=num_classes),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        final_conv = self.classifier[0][4]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, 0, 0.01)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


@register_model(family="nin", paper=PAPER, min_input_size=55)
def nin(*, num_classes: int = 1000, **kwargs) -> NIN:
    """NIN (ImageNet): four mlpconv blocks 96/256/384/1024, 11x11/4, 5x5, 3x3, 3x3, global average pooling.

    The Caffe Model Zoo "NIN ImageNet" model by Min Lin (gist mavenlin/d802a5849de39225bcc6, the
    network of Lin et al. 2013, Section 4): conv1 96@11x11/4, conv2 256@5x5 pad 2, conv3 384@3x3 pad 1,
    conv4 1024@3x3 pad 1, each followed by two 1x1 convs (cccp layers) with ReLU; 3x3/2 max pools (Caffe's
    ceil rounding) after the first three blocks, dropout 0.5 after the third pool; the last 1x1 conv gives
    num_classes maps (ReLU kept, as in the Caffe model), averaged globally (6x6 at 224x224).
    7,595,176 params at 1000 classes.
    """
    return NIN(num_classes=num_classes, **kwargs)
