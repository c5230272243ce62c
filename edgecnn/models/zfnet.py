"""ZFNet (Zeiler and Fergus 2013): AlexNet with a 7x7/2 first layer and wider conv3-conv5."""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.layers import LocalResponseNorm
from edgecnn.registry import register_model

__all__ = ["ZFNet", "zfnet"]

PAPER = "Zeiler and Fergus 2013, Visualizing and understanding convolutional networks (arXiv 1311.2901, ECCV 2014)"


class ZFNet(nn.Module):
    """ZFNet: single-tower AlexNet with a 7x7/2 conv1, a 5x5/2 conv2, LRN after both and 3x3/2 max pools."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=7, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            nn.Conv2d(96, 256, kernel_size=5, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            nn.Conv2d(256, 512, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(512, 1024, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 512, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model(family="zfnet", paper=PAPER, tags=("heavy",), min_input_size=63)
def zfnet(*, num_classes: int = 1000, **kwargs) -> ZFNet:
    """ZFNet: conv1 96@7x7/2, conv2 256@5x5/2, conv3-5 512/1024/512 @3x3, FC 4096-4096, 224x224 input.

    Zeiler and Fergus 2013, Fig. 3 architecture with Table 1's wider "layers 3,4,5: 512,1024,512 maps"
    variant (their best single model); 107,627,624 params at 1000 classes. Padding and ceil-mode pooling
    are chosen to reproduce Fig. 3's map sizes (224 -> 110 -> 55 -> 26 -> 13 -> 6); each of the first two
    layers is conv -> ReLU -> 3x3/2 max pool -> contrast normalization across maps (LRN with AlexNet's
    k=2, n=5, alpha=1e-4, beta=0.75); dropout 0.5 in FC6 and FC7; weights N(0, 0.01), biases 0 (Section 3).
    """
    return ZFNet(num_classes=num_classes, **kwargs)
