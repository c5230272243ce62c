"""VGG 11/13/16/19 with and without batch normalization (Simonyan and Zisserman 2014), key-compatible with
torchvision."""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.registry import register_model

__all__ = [
    "VGG",
    "make_layers",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

PAPER = (
    "Simonyan and Zisserman 2014, Very deep convolutional networks for large-scale image recognition (arXiv 1409.1556)"
)

cfgs: dict[str, list[int | str]] = {
    # 3x3 convolution widths; "M" is a 2x2 max pool. Keys are the columns of the paper's Table 1.
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: list[int | str], batch_norm: bool = False) -> nn.Sequential:
    """The convolutional trunk for one ``cfgs`` row: conv (-> BatchNorm) -> ReLU per width, max pool per "M"."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG: a convolutional trunk, a 7x7 adaptive average pool and a 4096-4096 fully connected head."""

    def __init__(self, features: nn.Module, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _vgg(cfg: str, batch_norm: bool, num_classes: int, **kwargs) -> VGG:
    return VGG(make_layers(cfgs[cfg], batch_norm=batch_norm), num_classes=num_classes, **kwargs)


@register_model(family="vgg", paper=PAPER, tags=("heavy",), torchvision=True)
def vgg11(*, num_classes: int = 1000, **kwargs) -> VGG:
    """VGG-11 (configuration A): 8 conv layers and 3 fully connected."""
    return _vgg("A", False, num_classes, **kwargs)


@register_model(family="vgg", paper=PAPER, tags=("heavy",), torchvision=True)
def vgg11_bn(*, num_classes: int = 1000, **kwargs) -> VGG:
    """VGG-11 (configuration A) with batch normalization after every convolution."""
    return _vgg("A", True, num_classes, **kwargs)


@register_model(family="vgg", paper=PAPER, tags=("heavy",), torchvision=True)
def vgg13(*, num_classes: int = 1000, **kwargs) -> VGG:
    """VGG-13 (configuration B): 10 conv layers and 3 fully connected."""
    return _vgg("B", False, num_classes, **kwargs)


@register_model(family="vgg", paper=PAPER, tags=("heavy",), torchvision=True)
def vgg13_bn(*, num_classes: int = 1000, **kwargs) -> VGG:
    """VGG-13 (configuration B) with batch normalization after every convolution."""
    return _vgg("B", True, num_classes, **kwargs)


@register_model(family="vgg", paper=PAPER, tags=("heavy",), torchvision=True)
def vgg16(*, num_classes: int = 1000, **kwargs) -> VGG:
    """VGG-16 (configuration D): 13 conv layers and 3 fully connected."""
    return _vgg("D", False, num_classes, **kwargs)


@register_model(family="vgg", paper=PAPER, tags=("heavy",), torchvision=True)
def vgg16_bn(*, num_classes: int = 1000, **kwargs) -> VGG:
    """VGG-16 (configuration D) with batch normalization after every convolution."""
    return _vgg("D", True, num_classes, **kwargs)


@register_model(family="vgg", paper=PAPER, tags=("heavy",), torchvision=True)
def vgg19(*, num_classes: int = 1000, **kwargs) -> VGG:
    """VGG-19 (configuration E): 16 conv layers and 3 fully connected."""
    return _vgg("E", False, num_classes, **kwargs)


@register_model(family="vgg", paper=PAPER, tags=("heavy",), torchvision=True)
def vgg19_bn(*, num_classes: int = 1000, **kwargs) -> VGG:
    """VGG-19 (configuration E) with batch normalization after every convolution."""
    return _vgg("E", True, num_classes, **kwargs)
