"""LeNet-5 (LeCun et al. 1998), the classic variant with a fully connected C3."""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.registry import register_model

__all__ = ["LeNet5", "lenet5"]

PAPER = "LeCun et al. 1998, Gradient-based learning applied to document recognition (Proc. IEEE 86(11))"


class LeNet5(nn.Module):
    """LeNet-5 with tanh activations and average-pooling subsampling; C5 is a 5x5 convolution.

    At the native 32x32 input C5 sees the whole 5x5 S4 map, exactly the paper's full connection; on larger
    inputs C5 slides and a global average pool reduces its map to one vector, so the parameter count is the
    same at every size.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, kernel_size=5),  # C1
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2, stride=2),  # S2
            nn.Conv2d(6, 16, kernel_size=5),  # C3, every S2 map feeds every C3 map
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2, stride=2),  # S4
            nn.Conv2d(16, 120, kernel_size=5),  # C5
            nn.Tanh(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(
            nn.Linear(120, 84),  # F6
            nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model(family="lenet", paper=PAPER, input_size=32, in_chans=1, num_classes=10, mean=(0.5,), std=(0.5,))
def lenet5(*, num_classes: int = 10, **kwargs) -> LeNet5:
    """LeNet-5: C1 6@5x5, S2, C3 16@5x5, S4, C5 120, F6 84 on 32x32 grayscale (61,706 params at 10 classes).

    The common modern reading of LeCun et al. 1998, Fig. 2: C3 connects to all six S2 maps (the paper's
    sparse Table I connection scheme is dropped), the trainable S2/S4 subsampling layers are plain 2x2
    average pools, the scaled tanh is a plain tanh and the RBF output layer is a linear layer. Inputs are
    normalized with mean 0.5 and std 0.5, mapping [0, 1] pixels to [-1, 1].
    """
    return LeNet5(num_classes=num_classes, **kwargs)
