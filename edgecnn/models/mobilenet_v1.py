"""MobileNet v1 (Howard et al. 2017): 13 depthwise-separable blocks, with the width multiplier alpha.

The paper's second knob, the resolution multiplier rho, is not a layer setting: it is the input size,
``round(224 * rho)`` (rho = 0.857, 0.714, 0.571 give 192, 160, 128). The network ends in adaptive
average pooling, so one definition serves every rho; pass the smaller input at export time.

Layout and channel rule follow TF-slim's ``mobilenet_v1.py`` (tensorflow/models research/slim), whose
MobileNet_v1_1.0_224 count (4,231,976 at 1000 classes) ours matches exactly: bias-free convolutions,
BatchNorm with scale and offset, ReLU6 after every BatchNorm (TF-slim's choice; it bounds activations,
which suits INT8), and a linear classifier with bias.
"""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.layers import ConvNormAct
from edgecnn.registry import register_model

__all__ = [
    "DepthwiseSeparableConv",
    "MobileNetV1",
    "mobilenet_v1",
    "mobilenet_v1_0_75",
    "mobilenet_v1_0_5",
    "mobilenet_v1_0_25",
]

PAPER = (
    "Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications "
    "(arXiv 1704.04861)"
)

STEM_CHANNELS = 32

cfg: list[tuple[int, int]] = [
    # c, s  (pointwise output channels, depthwise stride): paper Table 1
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
]


def scale_channels(channels: int, width_mult: float, min_channels: int = 8) -> int:
    """TF-slim's width rule: ``max(int(channels * alpha), 8)``."""
    return max(int(channels * width_mult), min_channels)


class DepthwiseSeparableConv(nn.Module):
    """3x3 depthwise convolution then 1x1 pointwise convolution, each followed by BatchNorm and ReLU6."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(
            in_channels, in_channels, stride=stride, groups=in_channels, activation_layer=nn.ReLU6
        )
        self.pointwise = ConvNormAct(in_channels, out_channels, kernel_size=1, activation_layer=nn.ReLU6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV1(nn.Module):
    """MobileNet v1; ``width_mult`` is the paper's alpha. ``dropout`` defaults to TF-slim's 1 - keep_prob 0.999."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.001) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        input_channels = scale_channels(STEM_CHANNELS, width_mult)
        features: list[nn.Module] = [ConvNormAct(3, input_channels, stride=2, activation_layer=nn.ReLU6)]
        for channels, stride in cfg:
            output_channels = scale_channels(channels, width_mult)
            features.append(DepthwiseSeparableConv(input_channels, output_channels, stride))
            input_channels = output_channels
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(input_channels, num_classes))

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model(family="mobilenet_v1", paper=PAPER, tags=("efficient",))
def mobilenet_v1(*, num_classes: int = 1000, **kwargs) -> MobileNetV1:
    """MobileNet v1 1.0x (alpha 1.0): 13 depthwise-separable blocks, 32 to 1024 channels, ReLU6.

    TF-slim MobileNet_v1_1.0_224 (tensorflow/models research/slim mobilenet_v1.md): 4,231,976 parameters
    at 1000 classes. ``width_mult`` sets alpha; the resolution multiplier rho is the input size.
    """
    return MobileNetV1(num_classes=num_classes, **kwargs)


@register_model(family="mobilenet_v1", paper=PAPER, tags=("efficient",))
def mobilenet_v1_0_75(*, num_classes: int = 1000, **kwargs) -> MobileNetV1:
    """MobileNet v1 0.75x (alpha 0.75): 24 to 768 channels, ReLU6, 2,585,560 parameters at 1000 classes.

    Source: Howard et al. 2017 Table 6 (2.6M parameters) and TF-slim MobileNet_v1_0.75_224
    (tensorflow/models research/slim mobilenet_v1.md), channels ``max(int(c * 0.75), 8)``.
    """
    return MobileNetV1(num_classes=num_classes, width_mult=0.75, **kwargs)


@register_model(family="mobilenet_v1", paper=PAPER, tags=("efficient",))
def mobilenet_v1_0_5(*, num_classes: int = 1000, **kwargs) -> MobileNetV1:
    """MobileNet v1 0.5x (alpha 0.5): 16 to 512 channels, ReLU6, 1,331,592 parameters at 1000 classes.

    Source: Howard et al. 2017 Table 6 (1.3M parameters) and TF-slim MobileNet_v1_0.5_224
    (tensorflow/models research/slim mobilenet_v1.md), channels ``max(int(c * 0.5), 8)``.
    """
    return MobileNetV1(num_classes=num_classes, width_mult=0.5, **kwargs)


@register_model(family="mobilenet_v1", paper=PAPER, tags=("efficient",))
def mobilenet_v1_0_25(*, num_classes: int = 1000, **kwargs) -> MobileNetV1:
    """MobileNet v1 0.25x (alpha 0.25): 8 to 256 channels, ReLU6, 470,072 parameters at 1000 classes.

    Source: Howard et al. 2017 Table 6 (0.5M parameters) and TF-slim MobileNet_v1_0.25_224
    (tensorflow/models research/slim mobilenet_v1.md), channels ``max(int(c * 0.25), 8)``.
    """
    return MobileNetV1(num_classes=num_classes, width_mult=0.25, **kwargs)
