"""ShuffleNet v2 (Ma et al. 2018), key-compatible with torchvision."""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.layers import ConvNormAct, channel_shuffle
from edgecnn.registry import register_model

__all__ = [
    "InvertedResidual",
    "ShuffleNetV2",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]

PAPER = "Ma et al. 2018, ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design (arXiv 1807.11164)"

STAGES_REPEATS = [4, 8, 4]

cfgs: dict[str, list[int]] = {
    # conv1, stage2, stage3, stage4, conv5 output channels (paper Table 5)
    "x0_5": [24, 48, 96, 192, 1024],
    "x1_0": [24, 116, 232, 464, 1024],
    "x1_5": [24, 176, 352, 704, 1024],
    "x2_0": [24, 244, 488, 976, 2048],
}


def depthwise_conv(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, bias=False, groups=channels)


class InvertedResidual(nn.Module):
    """ShuffleNet v2 unit: split channels (stride 1) or duplicate the input (stride 2), transform, concat, shuffle."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError(f"illegal stride value {stride}")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features << 1:
            raise ValueError(f"stride 1 needs inp == oup, got inp {inp}, oup {oup}")

        if stride > 1:
            self.branch1 = nn.Sequential(
                depthwise_conv(inp, stride),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch_features, branch_features, kernel_size=1, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            depthwise_conv(branch_features, stride),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, kernel_size=1, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNet v2: 3x3/2 stem, max pool, three stages of units, 1x1 conv, global average pool, ``fc``."""

    def __init__(self, stages_repeats: list[int], stages_out_channels: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        self._stage_out_channels = stages_out_channels

        input_channels = stages_out_channels[0]
        self.conv1 = ConvNormAct(3, input_channels, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        for name, repeats, output_channels in zip(
            ("stage2", "stage3", "stage4"), stages_repeats, stages_out_channels[1:]
        ):
            units = [InvertedResidual(input_channels, output_channels, 2)]
            units += [InvertedResidual(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            input_channels = output_channels

        self.conv5 = ConvNormAct(input_channels, stages_out_channels[-1], kernel_size=1)
        self.fc = nn.Linear(stages_out_channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


def _shufflenet_v2(width: str, num_classes: int, **kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(STAGES_REPEATS, cfgs[width], num_classes=num_classes, **kwargs)


@register_model(family="shufflenet_v2", paper=PAPER, tags=("efficient",), torchvision=True)
def shufflenet_v2_x0_5(*, num_classes: int = 1000, **kwargs) -> ShuffleNetV2:
    """ShuffleNet v2 0.5x: stage channels 48/96/192, 1024-channel conv5."""
    return _shufflenet_v2("x0_5", num_classes, **kwargs)


@register_model(family="shufflenet_v2", paper=PAPER, tags=("efficient",), torchvision=True)
def shufflenet_v2_x1_0(*, num_classes: int = 1000, **kwargs) -> ShuffleNetV2:
    """ShuffleNet v2 1.0x: stage channels 116/232/464, 1024-channel conv5."""
    return _shufflenet_v2("x1_0", num_classes, **kwargs)


@register_model(family="shufflenet_v2", paper=PAPER, tags=("efficient",), torchvision=True)
def shufflenet_v2_x1_5(*, num_classes: int = 1000, **kwargs) -> ShuffleNetV2:
    """ShuffleNet v2 1.5x: stage channels 176/352/704, 1024-channel conv5."""
    return _shufflenet_v2("x1_5", num_classes, **kwargs)


@register_model(family="shufflenet_v2", paper=PAPER, tags=("efficient",), torchvision=True)
def shufflenet_v2_x2_0(*, num_classes: int = 1000, **kwargs) -> ShuffleNetV2:
    """ShuffleNet v2 2.0x: stage channels 244/488/976, 2048-channel conv5."""
    return _shufflenet_v2("x2_0", num_classes, **kwargs)
