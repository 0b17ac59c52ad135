"""VGG-19 with batch norm after every conv and no dropout: its 16 convs are the 16 layers."""
from __future__ import annotations

from torch import nn

from sedona_runtime.heads.final import MLPHead
from sedona_runtime.models.layered import LayeredNet
from sedona_runtime.models.registry import ModelConfig, register_model, scaled

# Output channels of the 16 convs; True marks a conv followed by 2x2 max-pooling, which belongs to it.
VGG19 = [(64, False), (64, True), (128, False), (128, True)] + [(256, False)] * 3 + [(256, True)]
VGG19 += ([(512, False)] * 3 + [(512, True)]) * 2


def conv_layer(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    """3x3 conv + BN + ReLU, then 2x2 max-pool when `pool`."""
    mods: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        mods.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*mods)


def _init_vgg(module: nn.Module) -> None:
    # torchvision's VGG initialisation.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@register_model("vgg19")
def build_vgg19(cfg: ModelConfig) -> LayeredNet:
    """VGG-19-BN. VGG has no stem; `cfg.stem` only sizes the MLP head: at ImageNet scale it is
    torchvision's (7x7 adaptive pool, 4096 hidden units); otherwise a 1x1 pool and 512 hidden units,
    both scaled by the width multiplier."""
    layers: list[nn.Module] = []
    channels: list[int] = []
    in_channels = cfg.in_channels
    for out, pool in VGG19:
        out = scaled(out, cfg.width)
        layers.append(conv_layer(in_channels, out, pool))
        channels.append(out)
        in_channels = out
    if cfg.stem == "imagenet":
        head = MLPHead(in_channels, cfg.num_classes, hidden=scaled(4096, cfg.width), pool=7)
    else:
        head = MLPHead(in_channels, cfg.num_classes, hidden=scaled(512, cfg.width), pool=1)
    net = LayeredNet(layers, head, channels, [max(1, c // 4) for c in channels], arch=cfg.arch)
    _init_vgg(net)
    return net
