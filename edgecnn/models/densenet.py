"""DenseNet-BC (Huang et al. 2017) for ImageNet, key-compatible with torchvision.

Each layer sees the concatenation of every earlier feature map in its block; transitions halve both
the channels (compression 0.5) and the resolution. torchvision's ``memory_efficient`` gradient
checkpointing is left out: it saves training memory only and changes neither keys nor outputs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.registry import register_model

__all__ = ["DenseNet", "densenet121", "densenet161", "densenet169", "densenet201"]

PAPER = "Huang et al. 2017, Densely Connected Convolutional Networks (CVPR 2017, arXiv 1608.06993)"


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck to ``bn_size * growth_rate`` channels, then BN-ReLU-3x3 to ``growth_rate``."""

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        bottleneck = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        new_features = self.conv2(self.relu2(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class _DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers named ``denselayer1..N``; returns the input and all new features concatenated."""

    _version = 2

    def __init__(
        self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int, drop_rate: float
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-1x1 convolution to ``num_output_features``, then 2x2 average pooling."""

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC: 7x7/2 stem, 3x3/2 max pool, dense blocks joined by transitions, BN-ReLU, global pool, linear.

    ``growth_rate`` is the channels each layer adds, ``block_config`` the layers per block,
    ``num_init_features`` the stem width, ``bn_size`` the bottleneck factor, ``drop_rate`` the dropout
    after each layer.
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, int, int, int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(num_features, num_features // 2))
                num_features = num_features // 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.Linear):
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x), inplace=True)
        out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.classifier(out)


def _densenet(growth_rate: int, block_config: tuple[int, int, int, int], num_init_features: int, **kwargs) -> DenseNet:
    return DenseNet(growth_rate, block_config, num_init_features, **kwargs)


@register_model(family="densenet", paper=PAPER, torchvision=True)
def densenet121(*, num_classes: int = 1000, **kwargs) -> DenseNet:
    """DenseNet-121: growth rate 32, blocks (6, 12, 24, 16), 64-channel stem."""
    return _densenet(32, (6, 12, 24, 16), 64, num_classes=num_classes, **kwargs)


@register_model(family="densenet", paper=PAPER, tags=("heavy",), torchvision=True)
def densenet161(*, num_classes: int = 1000, **kwargs) -> DenseNet:
    """DenseNet-161: growth rate 48, blocks (6, 12, 36, 24), 96-channel stem."""
    return _densenet(48, (6, 12, 36, 24), 96, num_classes=num_classes, **kwargs)


@register_model(family="densenet", paper=PAPER, torchvision=True)
def densenet169(*, num_classes: int = 1000, **kwargs) -> DenseNet:
    """DenseNet-169: growth rate 32, blocks (6, 12, 32, 32), 64-channel stem."""
    return _densenet(32, (6, 12, 32, 32), 64, num_classes=num_classes, **kwargs)


@register_model(family="densenet", paper=PAPER, tags=("heavy",), torchvision=True)
def densenet201(*, num_classes: int = 1000, **kwargs) -> DenseNet:
    """DenseNet-201: growth rate 32, blocks (6, 12, 48, 32), 64-channel stem."""
    return _densenet(32, (6, 12, 48, 32), 64, num_classes=num_classes, **kwargs)
