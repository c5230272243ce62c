"""MobileNet v3 Large and Small (Howard et al. 2019), key-compatible with torchvision."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from edgecnn.layers import ConvNormAct, SqueezeExcitation, make_divisible
from edgecnn.registry import register_model

__all__ = [
    "InvertedResidualConfig",
    "InvertedResidual",
    "MobileNetV3",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
]

PAPER = "Howard et al. 2019, Searching for MobileNetV3 (arXiv 1905.02244)"

cfgs: dict[str, list[tuple[int, int, int, int, bool, str, int]]] = {
    "large": [
        # in, kernel, expanded, out, SE, activation, stride
        (16, 3, 16, 16, False, "RE", 1),
        (16, 3, 64, 24, False, "RE", 2),
        (24, 3, 72, 24, False, "RE", 1),
        (24, 5, 72, 40, True, "RE", 2),
        (40, 5, 120, 40, True, "RE", 1),
        (40, 5, 120, 40, True, "RE", 1),
        (40, 3, 240, 80, False, "HS", 2),
        (80, 3, 200, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 480, 112, True, "HS", 1),
        (112, 3, 672, 112, True, "HS", 1),
        (112, 5, 672, 160, True, "HS", 2),
        (160, 5, 960, 160, True, "HS", 1),
        (160, 5, 960, 160, True, "HS", 1),
    ],
    "small": [
        # in, kernel, expanded, out, SE, activation, stride
        (16, 3, 16, 16, True, "RE", 2),
        (16, 3, 72, 24, False, "RE", 2),
        (24, 3, 88, 24, False, "RE", 1),
        (24, 5, 96, 40, True, "HS", 2),
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 120, 48, True, "HS", 1),
        (48, 5, 144, 48, True, "HS", 1),
        (48, 5, 288, 96, True, "HS", 2),
        (96, 5, 576, 96, True, "HS", 1),
        (96, 5, 576, 96, True, "HS", 1),
    ],
}
"""Bottleneck rows of the paper's Tables 1 and 2; "RE" is ReLU, "HS" hard-swish."""

last_channels = {"large": 1280, "small": 1024}


class InvertedResidualConfig:
    """One bottleneck row with ``width_mult`` applied to its channel counts."""

    def __init__(
        self,
        input_channels: int,
        kernel: int,
        expanded_channels: int,
        out_channels: int,
        use_se: bool,
        activation: str,
        stride: int,
        width_mult: float = 1.0,
    ) -> None:
        self.input_channels = self.adjust_channels(input_channels, width_mult)
        self.kernel = kernel
        self.expanded_channels = self.adjust_channels(expanded_channels, width_mult)
        self.out_channels = self.adjust_channels(out_channels, width_mult)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride

    @staticmethod
    def adjust_channels(channels: int, width_mult: float) -> int:
        return make_divisible(channels * width_mult, 8)


class InvertedResidual(nn.Module):
    """Expand, filter depthwise, squeeze-and-excite (optional), project linearly; residual when shapes allow."""

    def __init__(
        self,
        cnf: InvertedResidualConfig,
        norm_layer: Callable[..., nn.Module],
        se_layer: Callable[..., nn.Module] = partial(SqueezeExcitation, scale_activation=nn.Hardsigmoid),
    ) -> None:
        super().__init__()
        if cnf.stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {cnf.stride}")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        activation_layer = nn.Hardswish if cnf.use_hs else nn.ReLU

        layers: list[nn.Module] = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(
                ConvNormAct(
                    cnf.input_channels,
                    cnf.expanded_channels,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=activation_layer,
                )
            )
        layers.append(
            ConvNormAct(
                cnf.expanded_channels,
                cnf.expanded_channels,
                kernel_size=cnf.kernel,
                stride=cnf.stride,
                groups=cnf.expanded_channels,
                norm_layer=norm_layer,
                activation_layer=activation_layer,
            )
        )
        if cnf.use_se:
            layers.append(se_layer(cnf.expanded_channels, make_divisible(cnf.expanded_channels // 4, 8)))
        layers.append(
            ConvNormAct(
                cnf.expanded_channels, cnf.out_channels, kernel_size=1, norm_layer=norm_layer, activation_layer=None
            )
        )
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = result + x
        return result


class MobileNetV3(nn.Module):
    """MobileNet v3 from bottleneck configs: hard-swish stem, bottlenecks, 6x-wide 1x1 conv, two-layer head."""

    def __init__(
        self,
        inverted_residual_setting: list[InvertedResidualConfig],
        last_channel: int,
        num_classes: int = 1000,
        norm_layer: Callable[..., nn.Module] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("inverted_residual_setting should not be empty")
        if norm_layer is None:
            norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)

        firstconv_output_channels = inverted_residual_setting[0].input_channels
        layers: list[nn.Module] = [
            ConvNormAct(3, firstconv_output_channels, stride=2, norm_layer=norm_layer, activation_layer=nn.Hardswish)
        ]
        layers += [InvertedResidual(cnf, norm_layer) for cnf in inverted_residual_setting]
        lastconv_input_channels = inverted_residual_setting[-1].out_channels
        lastconv_output_channels = 6 * lastconv_input_channels
        layers.append(
            ConvNormAct(
                lastconv_input_channels,
                lastconv_output_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv_output_channels, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _mobilenet_v3(arch: str, num_classes: int, width_mult: float = 1.0, **kwargs) -> MobileNetV3:
    setting = [InvertedResidualConfig(*row, width_mult=width_mult) for row in cfgs[arch]]
    last_channel = InvertedResidualConfig.adjust_channels(last_channels[arch], width_mult)
    return MobileNetV3(setting, last_channel, num_classes=num_classes, **kwargs)


@register_model(family="mobilenet_v3", paper=PAPER, tags=("efficient",), torchvision=True)
def mobilenet_v3_large(*, num_classes: int = 1000, **kwargs) -> MobileNetV3:
    """MobileNet v3 Large 1.0x: 15 bottlenecks with SE and hard-swish, 1280-wide head (paper Table 1)."""
    return _mobilenet_v3("large", num_classes, **kwargs)


@register_model(family="mobilenet_v3", paper=PAPER, tags=("efficient",), torchvision=True)
def mobilenet_v3_small(*, num_classes: int = 1000, **kwargs) -> MobileNetV3:
    """MobileNet v3 Small 1.0x: 11 bottlenecks with SE and hard-swish, 1024-wide head (paper Table 2)."""
    return _mobilenet_v3("small", num_classes, **kwargs)
