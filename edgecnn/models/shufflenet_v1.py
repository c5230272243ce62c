"""ShuffleNet v1 (Zhang et al. 2017): grouped 1x1 convolutions, channel shuffle and depthwise 3x3 filters.

Channels come from the paper's Table 1 and are scaled by ``width_mult`` (the paper's "ShuffleNet s x").
Where the paper leaves choices open we follow megvii's reference implementation
(megvii-model/ShuffleNet-Series, ShuffleNetV1/network.py), with its module names, so its g=3 and g=8
checkpoints load into ours with ``strict=True``:

- stem channels 12/24/24/48 for widths 0.5/1.0/1.5/2.0 (rounded up to a multiple of g, hence 16 for
  0.5x g=8), stage channels rounded to a multiple of 4g so every bottleneck (1/4 of the output) divides
  into g groups;
- the channel shuffle sits after the depthwise convolution (equivalent to before it: the depthwise
  filter is per channel) and reshapes to (C/g, g) before transposing, i.e. ``channel_shuffle(x, C // g)``;
- stride-2 units concatenate the 3x3/2 average-pooled input with the ReLU of the main branch;
- a bias-free linear classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.layers import ConvNormAct, channel_shuffle, make_divisible
from edgecnn.registry import register_model

__all__ = [
    "ShuffleV1Block",
    "ShuffleNetV1",
    "shufflenet_v1_g1",
    "shufflenet_v1_g2",
    "shufflenet_v1_g3",
    "shufflenet_v1_g4",
    "shufflenet_v1_g8",
]

PAPER = (
    "Zhang et al. 2017, ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices "
    "(arXiv 1707.01083)"
)

STAGE_REPEATS = [4, 8, 4]

stage_out_channels: dict[int, list[int]] = {
    # groups: stage2, stage3, stage4 output channels at 1.0x (paper Table 1)
    1: [144, 288, 576],
    2: [200, 400, 800],
    3: [240, 480, 960],
    4: [272, 544, 1088],
    8: [384, 768, 1536],
}

stem_channels: dict[float, int] = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
"""First convolution's channels per width (megvii's choice; the paper gives 24 at 1.0x)."""


class ShuffleV1Block(nn.Module):
    """ShuffleNet unit: grouped 1x1 -> shuffle -> depthwise 3x3 -> grouped 1x1, added to the input (stride 1)
    or concatenated with its 3x3/2 average pool (stride 2)."""

    def __init__(self, inp: int, oup: int, *, groups: int, first_group: bool, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        self.stride = stride
        self.groups = groups
        mid_channels = oup // 4
        outputs = oup - inp if stride == 2 else oup

        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid_channels, 1, 1, 0, groups=1 if first_group else groups, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, mid_channels, 3, stride, 1, groups=mid_channels, bias=False),
            nn.BatchNorm2d(mid_channels),
        )
        self.branch_main_2 = nn.Sequential(
            nn.Conv2d(mid_channels, outputs, 1, 1, 0, groups=groups, bias=False),
            nn.BatchNorm2d(outputs),
        )
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        self.shuffle_groups = mid_channels // groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_main_1(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.shuffle_groups)
        out = self.branch_main_2(out)
        if self.stride == 1:
            return torch.relu(out + x)
        return torch.cat((self.branch_proj(x), torch.relu(out)), 1)


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1 with ``groups`` in {1, 2, 3, 4, 8} and ``width_mult`` in {0.5, 1.0, 1.5, 2.0}."""

    def __init__(self, groups: int = 3, num_classes: int = 1000, width_mult: float = 1.0) -> None:
        super().__init__()
        if groups not in stage_out_channels:
            raise ValueError(f"unsupported groups {groups}: expected one of {sorted(stage_out_channels)}")
        if width_mult not in stem_channels:
            raise ValueError(f"unsupported width_mult {width_mult}: expected one of {sorted(stem_channels)}")

        input_channels = make_divisible(stem_channels[width_mult], groups)
        self.first_conv = ConvNormAct(3, input_channels, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        blocks: list[nn.Module] = []
        for stage, (repeats, channels) in enumerate(zip(STAGE_REPEATS, stage_out_channels[groups])):
            output_channels = make_divisible(channels * width_mult, 4 * groups)
            for i in range(repeats):
                blocks.append(
                    ShuffleV1Block(
                        input_channels,
                        output_channels,
                        groups=groups,
                        first_group=stage == 0 and i == 0,
                        stride=2 if i == 0 else 1,
                    )
                )
                input_channels = output_channels
        self.features = nn.Sequential(*blocks)
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(input_channels, num_classes, bias=False))

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.maxpool(self.first_conv(x)))
        return self.classifier(torch.flatten(self.globalpool(x), 1))


@register_model(family="shufflenet_v1", paper=PAPER, tags=("efficient",))
def shufflenet_v1_g1(*, num_classes: int = 1000, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1.0x, g=1: stage channels 144/288/576, ungrouped 1x1 convolutions (no shuffle).

    Zhang et al. 2017 Table 1 (143 MFLOPs); layout of megvii-model/ShuffleNet-Series ShuffleNetV1.
    ``width_mult`` in {0.5, 1.0, 1.5, 2.0} scales the channels.
    """
    return ShuffleNetV1(groups=1, num_classes=num_classes, **kwargs)


@register_model(family="shufflenet_v1", paper=PAPER, tags=("efficient",))
def shufflenet_v1_g2(*, num_classes: int = 1000, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1.0x, g=2: stage channels 200/400/800, 1x1 convolutions in 2 groups.

    Zhang et al. 2017 Table 1 (140 MFLOPs); layout of megvii-model/ShuffleNet-Series ShuffleNetV1.
    ``width_mult`` in {0.5, 1.0, 1.5, 2.0} scales the channels.
    """
    return ShuffleNetV1(groups=2, num_classes=num_classes, **kwargs)


@register_model(family="shufflenet_v1", paper=PAPER, tags=("efficient",))
def shufflenet_v1_g3(*, num_classes: int = 1000, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1.0x, g=3: stage channels 240/480/960, 1x1 convolutions in 3 groups.

    Zhang et al. 2017 Table 1 (137 MFLOPs); megvii-model/ShuffleNet-Series ShuffleNetV1 1.0x g=3
    (1.9M parameters), whose checkpoints load into this definition.
    ``width_mult`` in {0.5, 1.0, 1.5, 2.0} scales the channels.
    """
    return ShuffleNetV1(groups=3, num_classes=num_classes, **kwargs)


@register_model(family="shufflenet_v1", paper=PAPER, tags=("efficient",))
def shufflenet_v1_g4(*, num_classes: int = 1000, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1.0x, g=4: stage channels 272/544/1088, 1x1 convolutions in 4 groups.

    Zhang et al. 2017 Table 1 (133 MFLOPs); layout of megvii-model/ShuffleNet-Series ShuffleNetV1.
    ``width_mult`` in {0.5, 1.0, 1.5, 2.0} scales the channels.
    """
    return ShuffleNetV1(groups=4, num_classes=num_classes, **kwargs)


@register_model(family="shufflenet_v1", paper=PAPER, tags=("efficient",))
def shufflenet_v1_g8(*, num_classes: int = 1000, **kwargs) -> ShuffleNetV1:
    """ShuffleNet v1 1.0x, g=8: stage channels 384/768/1536, 1x1 convolutions in 8 groups.

    Zhang et al. 2017 Table 1 (137 MFLOPs); megvii-model/ShuffleNet-Series ShuffleNetV1 1.0x g=8
    (2.4M parameters), whose checkpoints load into this definition.
    ``width_mult`` in {0.5, 1.0, 1.5, 2.0} scales the channels.
    """
    return ShuffleNetV1(groups=8, num_classes=num_classes, **kwargs)
