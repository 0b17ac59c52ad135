"""The networks' own classifiers, as Heads: global pool + FC (ResNets, small nets), VGG's MLP, a user's modules."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from sedona_runtime.heads.base import Head


class PoolLinearHead(Head):
    """Global average pool + FC (the ResNet head; `fc` named as in torchvision)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MLPHead(Head):
    """VGG's 3-layer MLP without dropout: [2x2 max-pool,] pool to `pool`x`pool`, Linear-ReLU, Linear-ReLU,
    Linear.

    `max_pool` puts VGG's last 2x2 max-pool in the head (the release attaches it to the final classifier:
    models/vgg.py). Module indices of `classifier` follow torchvision's VGG with its two Dropout slots removed.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int, pool: int, max_pool: bool = False) -> None:
        super().__init__()
        self.maxpool: nn.Module = nn.MaxPool2d(2, 2) if max_pool else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Linear(in_channels * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.maxpool(x)), 1))


class SequentialHead(nn.Sequential, Head):
    """A user network's own classifier: its modules applied in order (an nn.Sequential that is a Head).

    Wrapping keeps the modules themselves (and their names when given as an OrderedDict), so the
    wrapped network computes exactly what the original does and shares its parameters.
    """
