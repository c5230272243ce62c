"""Inception-ResNet v1 and v2 (Szegedy et al. 2016): Inception modules with scaled residual connections."""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.layers import BasicConv2d
from edgecnn.models.inception_v4 import INCEPTION_MEAN, INCEPTION_STD, PAPER, ReductionA
from edgecnn.registry import register_model

__all__ = [
    "Mixed5b",
    "Block35",
    "Block17",
    "Block8",
    "ReductionB",
    "InceptionResNetV1",
    "InceptionResNetV2",
    "inception_resnet_v1",
    "inception_resnet_v2",
]


class Mixed5b(nn.Module):
    """Inception-ResNet-v2's last stem module (TF-slim's Mixed_5b), 192 -> 320 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(192, 48, kernel_size=1),
            BasicConv2d(48, 64, kernel_size=5, padding=2),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(192, 64, kernel_size=1),
            BasicConv2d(64, 96, kernel_size=3, padding=1),
            BasicConv2d(96, 96, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            BasicConv2d(192, 64, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Block35(nn.Module):
    """Inception-ResNet-A (35x35): 1x1, 1x1 -> 3x3, 1x1 -> 3x3 -> 3x3, then a linear 1x1 back to
    ``in_channels``, scaled and added to the input."""

    def __init__(
        self, in_channels: int, branch0: int, branch1: tuple[int, int], branch2: tuple[int, int, int], scale: float
    ) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(in_channels, branch0, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(in_channels, branch1[0], kernel_size=1),
            BasicConv2d(branch1[0], branch1[1], kernel_size=3, padding=1),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, branch2[0], kernel_size=1),
            BasicConv2d(branch2[0], branch2[1], kernel_size=3, padding=1),
            BasicConv2d(branch2[1], branch2[2], kernel_size=3, padding=1),
        )
        self.conv2d = nn.Conv2d(branch0 + branch1[1] + branch2[2], in_channels, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1))
        return self.relu(out * self.scale + x)


class Block17(nn.Module):
    """Inception-ResNet-B (17x17): 1x1 next to 1x1 -> 1x7 -> 7x1, linear 1x1 up, scaled residual."""

    def __init__(self, in_channels: int, branch0: int, branch1: tuple[int, int, int], scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(in_channels, branch0, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(in_channels, branch1[0], kernel_size=1),
            BasicConv2d(branch1[0], branch1[1], kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(branch1[1], branch1[2], kernel_size=(7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(branch0 + branch1[2], in_channels, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x)), 1))
        return self.relu(out * self.scale + x)


class Block8(nn.Module):
    """Inception-ResNet-C (8x8): 1x1 next to 1x1 -> 1x3 -> 3x1, linear 1x1 up, scaled residual.

    ``no_relu`` leaves out the activation after the sum (TF-slim's final block of Inception-ResNet-v2).
    """

    def __init__(
        self, in_channels: int, branch0: int, branch1: tuple[int, int, int], scale: float, no_relu: bool = False
    ) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(in_channels, branch0, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(in_channels, branch1[0], kernel_size=1),
            BasicConv2d(branch1[0], branch1[1], kernel_size=(1, 3), padding=(0, 1)),
            BasicConv2d(branch1[1], branch1[2], kernel_size=(3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(branch0 + branch1[2], in_channels, kernel_size=1)
        self.relu = None if no_relu else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x)), 1))
        out = out * self.scale + x
        return out if self.relu is None else self.relu(out)


class ReductionB(nn.Module):
    """17x17 -> 8x8 reduction of the Inception-ResNets (Figures 12 and 18): three 1x1 -> (3x3 ->) 3x3/2
    branches and a 3x3/2 max pool; ``branchN`` lists each branch's convolution widths."""

    def __init__(
        self,
        in_channels: int,
        branch0: tuple[int, int],
        branch1: tuple[int, int],
        branch2: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(
            BasicConv2d(in_channels, branch0[0], kernel_size=1),
            BasicConv2d(branch0[0], branch0[1], kernel_size=3, stride=2),
        )
        self.branch1 = nn.Sequential(
            BasicConv2d(in_channels, branch1[0], kernel_size=1),
            BasicConv2d(branch1[0], branch1[1], kernel_size=3, stride=2),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, branch2[0], kernel_size=1),
            BasicConv2d(branch2[0], branch2[1], kernel_size=3, padding=1),
            BasicConv2d(branch2[1], branch2[2], kernel_size=3, stride=2),
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class InceptionResNetV1(nn.Module):
    """Inception-ResNet-v1 (Figure 15): Figure 14 stem, 5x A, Reduction-A, 10x B, Reduction-B, 5x C."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, kernel_size=3)
        self.conv2d_2b = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, kernel_size=1)
        self.conv2d_4a = BasicConv2d(80, 192, kernel_size=3)
        self.conv2d_4b = BasicConv2d(192, 256, kernel_size=3, stride=2)
        self.repeat = nn.Sequential(*[Block35(256, 32, (32, 32), (32, 32, 32), scale=0.17) for _ in range(5)])
        self.mixed_6a = ReductionA(256, k=192, l=192, m=256, n=384)
        self.repeat_1 = nn.Sequential(*[Block17(896, 128, (128, 128, 128), scale=0.10) for _ in range(10)])
        self.mixed_7a = ReductionB(896, (256, 384), (256, 256), (256, 256, 256))
        self.repeat_2 = nn.Sequential(*[Block8(1792, 192, (192, 192, 192), scale=0.20) for _ in range(5)])
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.classif = nn.Linear(1792, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.mixed_7a(self.repeat_1(self.mixed_6a(self.repeat(x))))
        x = self.repeat_2(x)
        return self.classif(self.dropout(torch.flatten(self.global_pool(x), 1)))


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 as TF-slim and timm define it: 10x A, 20x B, 9x C plus a final C block without
    activation and a 1x1 conv to 1536 channels. Attribute names follow timm's checkpoints."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, kernel_size=3)
        self.conv2d_2b = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, kernel_size=1)
        self.conv2d_4a = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed5b()
        self.repeat = nn.Sequential(*[Block35(320, 32, (32, 32), (32, 48, 64), scale=0.17) for _ in range(10)])
        self.mixed_6a = ReductionA(320, k=256, l=256, m=384, n=384)
        self.repeat_1 = nn.Sequential(*[Block17(1088, 192, (128, 160, 192), scale=0.10) for _ in range(20)])
        self.mixed_7a = ReductionB(1088, (256, 384), (256, 288), (256, 288, 320))
        self.repeat_2 = nn.Sequential(*[Block8(2080, 192, (192, 224, 256), scale=0.20) for _ in range(9)])
        self.block8 = Block8(2080, 192, (192, 224, 256), scale=1.0, no_relu=True)
        self.conv2d_7b = BasicConv2d(2080, 1536, kernel_size=1)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.classif = nn.Linear(1536, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        x = self.repeat(self.mixed_5b(self.maxpool_5a(x)))
        x = self.mixed_7a(self.repeat_1(self.mixed_6a(x)))
        x = self.conv2d_7b(self.block8(self.repeat_2(x)))
        return self.classif(self.dropout(torch.flatten(self.global_pool(x), 1)))


@register_model(
    family="inception_resnet",
    paper=PAPER,
    input_size=299,
    mean=INCEPTION_MEAN,
    std=INCEPTION_STD,
    tags=("heavy",),
    min_input_size=75,
)
def inception_resnet_v1(*, num_classes: int = 1000, **kwargs) -> InceptionResNetV1:
    """Inception-ResNet-v1 at 299x299 (22.8M parameters), the paper's configuration.

    Configuration: Szegedy et al. 2016 (arXiv 1602.07261) Figure 15 with the Figure 14 stem (35x35x256),
    5x Inception-ResNet-A (Figure 10), Reduction-A with k, l, m, n = 192, 192, 256, 384 (Table 1),
    10x Inception-ResNet-B (Figure 11), Reduction-B (Figure 12), 5x Inception-ResNet-C (Figure 13),
    residual scales 0.17 / 0.10 / 0.20 (TF-slim's), average pool, dropout 0.2, linear classifier.
    Layer widths match facenet-pytorch's InceptionResnetV1, which follows TF-slim in adding a sixth,
    non-activated C block and a 512-d embedding head instead of the classifier.
    """
    return InceptionResNetV1(num_classes=num_classes, **kwargs)


@register_model(
    family="inception_resnet",
    paper=PAPER,
    input_size=299,
    mean=INCEPTION_MEAN,
    std=INCEPTION_STD,
    tags=("heavy",),
    min_input_size=75,
)
def inception_resnet_v2(*, num_classes: int = 1000, **kwargs) -> InceptionResNetV2:
    """Inception-ResNet-v2 at 299x299 (55.8M parameters), layer for layer as timm's ``inception_resnet_v2``.

    That is TF-slim's definition: 10x A, 20x B, 10x C blocks (the last without activation, scale 1.0)
    and a 1x1 conv to 1536 channels, residual scales 0.17 / 0.10 / 0.20, Reduction-A k, l, m, n =
    256, 256, 384, 384; inputs scaled by mean = std = (0.5, 0.5, 0.5) as timm's config says.
    """
    return InceptionResNetV2(num_classes=num_classes, **kwargs)
