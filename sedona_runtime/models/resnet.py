"""Bottleneck ResNets as layered networks: each residual block is one layer, the stem joins layer 1."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import Tensor, nn

from sedona_runtime.heads.base import init_weights
from sedona_runtime.heads.final import PoolLinearHead
from sedona_runtime.models.layered import LayeredNet
from sedona_runtime.models.registry import ModelConfig, register_model, scaled
from sedona_runtime.models.stems import make_stem

DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3 conv), with the same module names."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def build_resnet(cfg: ModelConfig, depths: Sequence[int], base: int = 64) -> LayeredNet:
    """A bottleneck ResNet with `depths` blocks per stage; stage i has `base * 2**i * width` planes."""
    inplanes = scaled(base, cfg.width)
    stem = make_stem(cfg.stem, cfg.in_channels, inplanes)
    layers: list[nn.Module] = []
    channels: list[int] = []
    head_channels: list[int] = []
    for stage, n_blocks in enumerate(depths):
        planes = scaled(base * 2**stage, cfg.width)
        for b in range(n_blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            block = Bottleneck(inplanes, planes, stride)
            inplanes = planes * Bottleneck.expansion
            # The stem belongs to layer 1 (paper Appendix D.1).
            layers.append(nn.Sequential(OrderedDict(stem=stem, block=block)) if not layers else block)
            channels.append(inplanes)
            head_channels.append(planes)  # Nc of a bottleneck: its inner width
    net = LayeredNet(layers, PoolLinearHead(inplanes, cfg.num_classes), channels, head_channels, arch=cfg.arch)
    init_weights(net)
    return net


def _register(name: str) -> None:
    @register_model(name)
    def build(cfg: ModelConfig) -> LayeredNet:
        return build_resnet(cfg, DEPTHS[name])


for _name in DEPTHS:
    _register(_name)
