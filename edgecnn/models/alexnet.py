"""AlexNet (Krizhevsky et al. 2012): torchvision's single-tower form and the paper's two-tower form."""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.layers import LocalResponseNorm
from edgecnn.registry import register_model

__all__ = ["AlexNet", "AlexNetOriginal", "alexnet", "alexnet_original"]

PAPER = "Krizhevsky et al. 2012, ImageNet classification with deep convolutional neural networks (NeurIPS 2012)"


class AlexNet(nn.Module):
    """torchvision's AlexNet: the single-GPU variant of Krizhevsky 2014 ("One weird trick"), 64-192-384-256-256,
    no LRN."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class AlexNetOriginal(nn.Module):
    """The paper's AlexNet: two towers as groups=2 convolutions, LRN after conv1/conv2, overlapping 3x3/2 max pools.

    conv2, conv4 and conv5 see only their own tower's half of the input maps (groups=2); conv3 and the fully
    connected layers see both. Each layer is convolution -> ReLU (-> LRN) (-> max pool), as in Section 3.5.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4),
            nn.ReLU(inplace=True),
            LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
            nn.ReLU(inplace=True),
            LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        # Section 5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers, else 0.
        biased_one = {self.features[4], self.features[10], self.features[12], self.classifier[0], self.classifier[3]}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 1.0 if m in biased_one else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model(family="alexnet", paper=PAPER, tags=("heavy",), min_input_size=63, torchvision=True)
def alexnet(*, num_classes: int = 1000, **kwargs) -> AlexNet:
    """AlexNet as torchvision builds it: single tower, 64-192-384-256-256 channels, no LRN, 224x224."""
    return AlexNet(num_classes=num_classes, **kwargs)


@register_model(family="alexnet", paper=PAPER, input_size=227, tags=("heavy",), min_input_size=67)
def alexnet_original(*, num_classes: int = 1000, **kwargs) -> AlexNetOriginal:
    """AlexNet as published: two towers (grouped convs), LRN, 96-256-384-384-256 channels, 227x227 input.

    Krizhevsky et al. 2012, Fig. 2 and Sections 3-5: conv1 96@11x11/4, conv2 256@5x5 (groups=2), conv3
    384@3x3, conv4 384@3x3 (groups=2), conv5 256@3x3 (groups=2), 3x3/2 max pools after the LRN layers and
    conv5, FC 4096-4096 with dropout 0.5 after each, 60,965,224 params at 1000 classes. The 227x227 input
    is Caffe bvlc_alexnet's (the paper's "224" gives no integer conv1 grid). LRN uses k=2, n=5,
    alpha=1e-4, beta=0.75 in PyTorch's (and Caffe's) convention, where alpha is divided by n. A 6x6
    adaptive average pool before the classifier (identity at 227x227) lets larger inputs through.
    """
    return AlexNetOriginal(num_classes=num_classes, **kwargs)
