"""ResNet (He et al. 2016), Wide ResNet (Zagoruyko & Komodakis 2016) and ResNeXt (Xie et al. 2017) for
ImageNet, key-compatible with torchvision (ResNet v1.5: the stride sits in the bottleneck's 3x3 convolution).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgecnn.registry import register_model

__all__ = [
    "conv3x3",
    "conv1x1",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
]

PAPER = "He et al. 2016, Deep Residual Learning for Image Recognition (CVPR 2016, arXiv 1512.03385)"
PAPER_WIDE = "Zagoruyko & Komodakis 2016, Wide Residual Networks (BMVC 2016, arXiv 1605.07146)"
PAPER_RESNEXT = (
    "Xie et al. 2017, Aggregated Residual Transformations for Deep Neural Networks (CVPR 2017, arXiv 1611.05431)"
)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with "same" padding and no bias (a batch norm follows)."""
    return nn.Conv2d(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        groups=groups,
        bias=False,
        dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise ValueError("BasicBlock supports dilation 1 only (as torchvision): use Bottleneck for dilated ResNets")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, strided), 1x1 expand by ``expansion``, with a residual connection."""

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """7x7/2 stem, 3x3/2 max pool, four stages of residual blocks, global average pool and a linear classifier.

    ``groups`` and ``width_per_group`` give ResNeXt and Wide ResNet; ``zero_init_residual`` zeroes the
    last batch norm of each residual branch so every block starts as the identity (Goyal et al. 2017).
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: list[bool] | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                f"replace_stride_with_dilation should be None or a 3-element list, got {replace_stride_with_dilation}"
            )
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck) and module.bn3.weight is not None:
                    nn.init.constant_(module.bn3.weight, 0)
                elif isinstance(module, BasicBlock) and module.bn2.weight is not None:
                    nn.init.constant_(module.bn2.weight, 0)

    def _make_layer(
        self,
        block: type[BasicBlock | Bottleneck],
        planes: int,
        blocks: int,
        stride: int = 1,
        dilate: bool = False,
    ) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )
        layers = [
            block(
                self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation, norm_layer
            )
        ]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    groups=self.groups,
                    base_width=self.base_width,
                    dilation=self.dilation,
                    norm_layer=norm_layer,
                )
            )
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _resnet(block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int, **kwargs) -> ResNet:
    return ResNet(block, layers, num_classes=num_classes, **kwargs)


@register_model(family="resnet", paper=PAPER, torchvision=True)
def resnet18(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-18: basic blocks, stages [2, 2, 2, 2]."""
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)


@register_model(family="resnet", paper=PAPER, torchvision=True)
def resnet34(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-34: basic blocks, stages [3, 4, 6, 3]."""
    return _resnet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)


@register_model(family="resnet", paper=PAPER, tags=("heavy",), torchvision=True)
def resnet50(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 (v1.5, stride in the 3x3): bottleneck blocks, stages [3, 4, 6, 3]."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, **kwargs)


@register_model(family="resnet", paper=PAPER, tags=("heavy",), torchvision=True)
def resnet101(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-101 (v1.5, stride in the 3x3): bottleneck blocks, stages [3, 4, 23, 3]."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, **kwargs)


@register_model(family="resnet", paper=PAPER, tags=("heavy",), torchvision=True)
def resnet152(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-152 (v1.5, stride in the 3x3): bottleneck blocks, stages [3, 8, 36, 3]."""
    return _resnet(Bottleneck, [3, 8, 36, 3], num_classes, **kwargs)


@register_model(family="wide_resnet", paper=PAPER_WIDE, tags=("heavy",), torchvision=True)
def wide_resnet50_2(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with twice the bottleneck width (the outer 1x1 widths are unchanged)."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, width_per_group=64 * 2, **kwargs)


@register_model(family="wide_resnet", paper=PAPER_WIDE, tags=("heavy",), torchvision=True)
def wide_resnet101_2(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with twice the bottleneck width (the outer 1x1 widths are unchanged)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, width_per_group=64 * 2, **kwargs)


@register_model(family="resnext", paper=PAPER_RESNEXT, tags=("heavy",), torchvision=True)
def resnext50_32x4d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNeXt-50 32x4d: ResNet-50 with 32 groups of width 4 in the first stage's 3x3."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, groups=32, width_per_group=4, **kwargs)


@register_model(family="resnext", paper=PAPER_RESNEXT, tags=("heavy",), torchvision=True)
def resnext101_32x8d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNeXt-101 32x8d: ResNet-101 with 32 groups of width 8 in the first stage's 3x3."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, groups=32, width_per_group=8, **kwargs)


@register_model(family="resnext", paper=PAPER_RESNEXT, tags=("heavy",), torchvision=True)
def resnext101_64x4d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNeXt-101 64x4d: ResNet-101 with 64 groups of width 4 in the first stage's 3x3."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, groups=64, width_per_group=4, **kwargs)
