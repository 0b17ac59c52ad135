"""Head: the classifier a block computes its local loss with, and HeadSpec, what it is attached to."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class HeadSpec:
    """Where a head is attached: the layer output it reads and the task it predicts."""

    in_channels: int  # channels of the layer output the head is attached to
    in_size: int  # spatial size (H == W) of that output
    num_classes: int
    width: int = 512  # 512 at CIFAR scale, 2048 at Tiny-ImageNet/ImageNet
    nc: int | None = None  # Nc; default max(1, in_channels // 4)
    # PredSim: bound on its prediction layer's input features (the reference's `dim_in_decoder`);
    # None: heads.predsim.PRED_FEATURES (512, the SEDONA release's default, which reproduces Table 1).
    pred_features: int | None = None

    @property
    def resolved_nc(self) -> int:
        """Nc actually used: the explicit value, else in_channels // 4, at least 1."""
        return max(1, int(self.nc) if self.nc is not None else self.in_channels // 4)


class Head(nn.Module):
    """A classifier over a feature map. Subclasses implement `forward(x) -> logits`."""

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def local_loss(self, x: Tensor, y: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """(loss, logits): cross-entropy with label smoothing by default."""
        logits = self(x)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits


def init_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal (fan_out) convs, unit/zero norms."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
