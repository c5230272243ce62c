"""Building blocks shared by the zoo, so that each family is written from them instead of copying them.

Attribute names follow torchvision where it has the same block, because checkpoints are keyed on them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["make_divisible", "ConvNormAct", "BasicConv2d", "SqueezeExcitation", "LocalResponseNorm", "channel_shuffle"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10% (MobileNet's rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation as indices 0, 1, 2, key-compatible with torchvision's Conv2dNormActivation.

    ``padding`` defaults to "same" for odd kernels; ``norm_layer=None`` or ``activation_layer=None``
    leaves that stage out (and gives the convolution a bias when there is no norm).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        inplace: bool | None = True,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=norm_layer is None,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer() if inplace is None else activation_layer(inplace=inplace))
        super().__init__(*layers)
        self.out_channels = out_channels


class BasicConv2d(nn.Module):
    """Conv2d (no bias) -> BatchNorm(eps=0.001) -> ReLU with attributes ``conv`` and ``bn``, as in torchvision's
    Inception."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) with 1x1 convolutions ``fc1``/``fc2``, as torchvision's."""

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` (odd ``size``, NCHW input) computed so that the TorchScript ONNX exporter keeps shapes.

    Same arithmetic as ``F.local_response_norm``: the channel window is summed by a 3D average pool with
    zero padding, so ``alpha`` is divided by ``size`` (PyTorch's and Caffe's convention). The built-in
    exports as Pad + If + reshapes with unknown shapes, which the adaptive pool after it cannot export.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        if size % 2 == 0:
            raise ValueError(f"LocalResponseNorm needs an odd window, got size={size}")
        super().__init__(size, alpha, beta, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = (self.size, 1, 1)
        mean_square = F.avg_pool3d((x * x).unsqueeze(1), window, stride=1, padding=(self.size // 2, 0, 0)).squeeze(1)
        return x / (mean_square * self.alpha + self.k).pow(self.beta)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: interleave the channels of ``groups`` groups (static shapes, ONNX-safe)."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, channels, height, width)
