"""Small, fast networks of the zoo's two shapes for CPU tests, demos and benchmarks."""
from __future__ import annotations

from torch import nn

from sedona_runtime.heads.base import init_weights
from sedona_runtime.heads.final import PoolLinearHead
from sedona_runtime.models.layered import LayeredNet
from sedona_runtime.models.registry import ModelConfig, register_model, scaled
from sedona_runtime.models.resnet import build_resnet
from sedona_runtime.models.stems import make_stem
from sedona_runtime.models.vgg import conv_layer

# Six VGG-style layers (out channels, pool after): 32x32 -> 32, 16, 16, 8, 8, 4.
SMALL = [(16, False), (32, True), (32, False), (64, True), (64, False), (128, True)]


@register_model("small")
def build_small(cfg: ModelConfig) -> LayeredNet:
    """6 conv+BN+ReLU layers (the first is the dataset's stem) and a global-pool + FC head."""
    layers: list[nn.Module] = []
    channels: list[int] = []
    in_channels = cfg.in_channels
    for i, (out, pool) in enumerate(SMALL):
        out = scaled(out, cfg.width)
        if i == 0:
            layers.append(make_stem(cfg.stem, in_channels, out))
        else:
            layers.append(conv_layer(in_channels, out, pool))
        channels.append(out)
        in_channels = out
    head = PoolLinearHead(in_channels, cfg.num_classes)
    net = LayeredNet(layers, head, channels, [max(1, c // 4) for c in channels], arch=cfg.arch)
    init_weights(net)
    return net


@register_model("small_resnet")
def build_small_resnet(cfg: ModelConfig) -> LayeredNet:
    """A 4-layer bottleneck ResNet (one block per stage, 16 base planes): the ResNet shape in small."""
    return build_resnet(cfg, (1, 1, 1, 1), base=16)
