"""VGG-19 with batch norm after every conv and no dropout: its 16 convs are the 16 layers."""
from __future__ import annotations

from torch import nn

from sedona_runtime.heads.final import MLPHead
from sedona_runtime.models.layered import LayeredNet
from sedona_runtime.models.registry import ModelConfig, register_model, scaled

# Output channels of the 16 convs; True marks a layer that starts with VGG's 2x2 max-pool. The release
# (models/vgg.py) attaches each auxiliary head to a conv's output before the pool that follows it, so the
# pool belongs to the start of the next layer (layers 3, 5, 9, 13) and the last pool to the classifier.
# Split points (and so every decoupling's layer indices) are the same as with the pool at a layer's end.
VGG19 = [(64, False), (64, False), (128, True), (128, False), (256, True)] + [(256, False)] * 3
VGG19 += [(512, True)] + [(512, False)] * 3 + [(512, True)] + [(512, False)] * 3

# Hidden width of the classifier MLP at width 1: the release uses 1024 * feat_mult (feat_mult 1 for its
# CIFAR-scale 0.25x network, 4 at full width), i.e. 4096 * width; at width 1 that is torchvision's 4096.
MLP_HIDDEN = 4096
# Spatial size the classifier sees after the last max-pool at each stem's input size (32, 64, 224 pixels):
# the release flattens that whole map into the MLP (1x1 on CIFAR, 2x2 on Tiny-ImageNet, torchvision's 7x7).
MLP_POOL = {"cifar": 1, "tiny_imagenet": 2, "imagenet": 7}


def conv_layer(
    in_channels: int, out_channels: int, pool: bool = False, *, pool_first: bool = False, bias: bool = True
) -> nn.Sequential:
    """3x3 conv + BN + ReLU, with a 2x2 max-pool before it (`pool_first`) or after it (`pool`).

    VGG-19 passes bias=False, like the release's ConvBNAct (module.py, bias=False): batch norm subtracts
    the batch mean right after the conv, so a bias is cancelled (at 0.25x width it added 1,376
    parameters). The small test net keeps its bias (its golden figures predate this)."""
    mods: list[nn.Module] = [nn.MaxPool2d(2, 2)] if pool_first else []
    mods += [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
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
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@register_model("vgg19")
def build_vgg19(cfg: ModelConfig) -> LayeredNet:
    """VGG-19-BN (paper App. D.1: BN after every conv, no dropout). VGG has no stem; `cfg.stem` only sets the
    classifier's input pooling (MLP_POOL). The classifier is the release's: the last max-pool, then
    Linear-ReLU-Linear-ReLU-Linear with MLP_HIDDEN * width hidden units (1024 at the paper's 0.25x CIFAR
    network, 4096 = torchvision's at width 1)."""
    layers: list[nn.Module] = []
    channels: list[int] = []
    in_channels = cfg.in_channels
    for out, pool_first in VGG19:
        out = scaled(out, cfg.width)
        layers.append(conv_layer(in_channels, out, pool_first=pool_first, bias=False))
        channels.append(out)
        in_channels = out
    head = MLPHead(in_channels, cfg.num_classes, hidden=scaled(MLP_HIDDEN, cfg.width), pool=MLP_POOL[cfg.stem],
                   max_pool=True)
    net = LayeredNet(layers, head, channels, [max(1, c // 4) for c in channels], arch=cfg.arch)
    _init_vgg(net)
    return net
