"""Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks") and the CIFAR
Wide ResNet built from the same blocks (Zagoruyko & Komodakis 2016).

Each residual branch runs BN-ReLU-conv; the identity path carries no normalization or activation, and
one BN-ReLU closes the network before pooling. Projection shortcuts (1x1 convolution, no BN) take the
pre-activated input, as in fb.resnet.torch ``preresnet.lua`` and the official WRN code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgecnn.models.resnet import conv1x1, conv3x3
from edgecnn.registry import register_model

__all__ = [
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet",
    "WideResNet",
    "preact_resnet18",
    "preact_resnet34",
    "preact_resnet50",
    "preact_resnet101",
    "preact_resnet152",
    "preact_resnet200",
    "wrn_28_10",
]

PAPER = "He et al. 2016, Identity Mappings in Deep Residual Networks (ECCV 2016, arXiv 1603.05027)"
PAPER_WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks (BMVC 2016, arXiv 1605.07146)"

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class PreActBasicBlock(nn.Module):
    """BN-ReLU-3x3 conv, BN-ReLU-(dropout)-3x3 conv, plus the shortcut.

    ``preact=False`` drops the leading BN-ReLU where the input is already activated (the first block
    after the ImageNet stem); ``dropout`` sits between the two convolutions, as in Wide ResNets.
    """

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        preact: bool = True,
        dropout: float = 0.0,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(inplanes) if preact else None
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.bn1 is None else self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU-1x1 reduce, BN-ReLU-3x3 (strided), BN-ReLU-1x1 expand by ``expansion``, plus the shortcut."""

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        preact: bool = True,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(inplanes) if preact else None
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv1x1(inplanes, planes)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.bn1 is None else self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut


PreActBlock = type[PreActBasicBlock | PreActBottleneck]


def _make_stage(
    block: PreActBlock,
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int = 1,
    preact_first: bool = True,
    **block_kwargs,
) -> nn.Sequential:
    """``blocks`` residual blocks; the first one strides and projects (1x1 convolution) when the shape changes."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = conv1x1(inplanes, planes * block.expansion, stride)
    layers = [block(inplanes, planes, stride, downsample, preact=preact_first, **block_kwargs)]
    layers += [block(planes * block.expansion, planes, **block_kwargs) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _init_weights(model: nn.Module) -> None:
    """ResNet's scheme: He-normal (fan-out) convolutions, unit-scale zero-shift batch norms."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)


class PreActResNet(nn.Module):
    """ImageNet pre-activation ResNet: the torchvision ResNet layout (conv1/bn1/relu/maxpool, layer1..4,
    avgpool, fc) with pre-activation blocks and a final ``bn_final`` + ReLU before pooling.
    """

    def __init__(self, block: PreActBlock, layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = [64, 128, 256, 512]
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip(widths, layers)):
            stage = _make_stage(block, inplanes, planes, blocks, stride=1 if index == 0 else 2, preact_first=index > 0)
            self.add_module(f"layer{index + 1}", stage)
            inplanes = planes * block.expansion
        self.bn_final = nn.BatchNorm2d(inplanes)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.relu(self.bn_final(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class WideResNet(nn.Module):
    """CIFAR Wide ResNet WRN-``depth``-``widen_factor``: 3x3 stem with 16 channels, three stages of
    (depth - 4) / 6 pre-activation basic blocks with 16k, 32k, 64k channels (strides 1, 2, 2), BN-ReLU,
    global average pool, linear.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"Wide ResNet depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = conv3x3(3, 16)
        self.layer1 = _make_stage(PreActBasicBlock, 16, widths[0], blocks, stride=1, dropout=dropout)
        self.layer2 = _make_stage(PreActBasicBlock, widths[0], widths[1], blocks, stride=2, dropout=dropout)
        self.layer3 = _make_stage(PreActBasicBlock, widths[1], widths[2], blocks, stride=2, dropout=dropout)
        self.bn_final = nn.BatchNorm2d(widths[2])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[2], num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.relu(self.bn_final(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model(family="preact_resnet", paper=PAPER)
def preact_resnet18(*, num_classes: int = 1000, **kwargs) -> PreActResNet:
    """Pre-activation ResNet-18: basic blocks, stages [2, 2, 2, 2]; 11,687,720 parameters.

    Configuration of fb.resnet.torch ``models/preresnet.lua`` (depth 18), the ImageNet code released
    with He et al. 2016 (Identity Mappings); the paper itself reports only depths 152 and 200 on ImageNet.
    """
    return PreActResNet(PreActBasicBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs)


@register_model(family="preact_resnet", paper=PAPER)
def preact_resnet34(*, num_classes: int = 1000, **kwargs) -> PreActResNet:
    """Pre-activation ResNet-34: basic blocks, stages [3, 4, 6, 3]; 21,795,880 parameters.

    Configuration of fb.resnet.torch ``models/preresnet.lua`` (depth 34), the ImageNet code released
    with He et al. 2016 (Identity Mappings); the paper itself reports only depths 152 and 200 on ImageNet.
    """
    return PreActResNet(PreActBasicBlock, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


@register_model(family="preact_resnet", paper=PAPER, tags=("heavy",))
def preact_resnet50(*, num_classes: int = 1000, **kwargs) -> PreActResNet:
    """Pre-activation ResNet-50: bottleneck blocks, stages [3, 4, 6, 3]; 25,549,352 parameters.

    Configuration of fb.resnet.torch ``models/preresnet.lua`` (depth 50), the ImageNet code released
    with He et al. 2016 (Identity Mappings); the paper itself reports only depths 152 and 200 on ImageNet.
    """
    return PreActResNet(PreActBottleneck, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


@register_model(family="preact_resnet", paper=PAPER, tags=("heavy",))
def preact_resnet101(*, num_classes: int = 1000, **kwargs) -> PreActResNet:
    """Pre-activation ResNet-101: bottleneck blocks, stages [3, 4, 23, 3]; 44,541,480 parameters.

    Configuration of fb.resnet.torch ``models/preresnet.lua`` (depth 101), the ImageNet code released
    with He et al. 2016 (Identity Mappings); the paper itself reports only depths 152 and 200 on ImageNet.
    """
    return PreActResNet(PreActBottleneck, [3, 4, 23, 3], num_classes=num_classes, **kwargs)


@register_model(family="preact_resnet", paper=PAPER, tags=("heavy",))
def preact_resnet152(*, num_classes: int = 1000, **kwargs) -> PreActResNet:
    """Pre-activation ResNet-152: bottleneck blocks, stages [3, 8, 36, 3]; 60,185,128 parameters.

    He et al. 2016 (Identity Mappings) Table 5, ImageNet; layout of fb.resnet.torch ``models/preresnet.lua``.
    """
    return PreActResNet(PreActBottleneck, [3, 8, 36, 3], num_classes=num_classes, **kwargs)


@register_model(family="preact_resnet", paper=PAPER, tags=("heavy",))
def preact_resnet200(*, num_classes: int = 1000, **kwargs) -> PreActResNet:
    """Pre-activation ResNet-200: bottleneck blocks, stages [3, 24, 36, 3]; 64,666,152 parameters.

    He et al. 2016 (Identity Mappings) Table 5, ImageNet; layout of fb.resnet.torch ``models/preresnet.lua``.
    """
    return PreActResNet(PreActBottleneck, [3, 24, 36, 3], num_classes=num_classes, **kwargs)


@register_model(
    family="wide_resnet",
    paper=PAPER_WRN,
    input_size=32,
    num_classes=10,
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    tags=("heavy",),
)
def wrn_28_10(*, num_classes: int = 10, dropout: float = 0.0, **kwargs) -> WideResNet:
    """WRN-28-10 for CIFAR (32x32): depth 28, widen factor 10, 16-160-320-640 channels; 36,479,194 parameters.

    Zagoruyko & Komodakis 2016, Table 1 and the official code (github.com/szagoruyko/wide-residual-networks):
    four pre-activation basic blocks per stage, 1x1 projection shortcuts; about 36.5M parameters at 10
    classes. ``dropout=0.3`` gives the paper's WRN-28-10 with dropout between the two convolutions.
    """
    return WideResNet(depth=28, widen_factor=10, dropout=dropout, num_classes=num_classes, **kwargs)
