"""Dataset-dependent input stems of the ResNets (paper Appendix D.1)."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from sedona_runtime.utils.errors import SedonaError


def make_stem(stem: str, in_channels: int, out_channels: int) -> nn.Sequential:
    """The stem that belongs to layer 1.

    cifar: 3x3 conv stride 1, no max-pool; tiny_imagenet: 7x7 conv stride 2, no max-pool;
    imagenet: the standard 7x7 stride-2 conv followed by a 3x3 stride-2 max-pool.
    Module names (conv1, bn1) follow torchvision so its weights map one to one.
    """
    if stem == "cifar":
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    elif stem in ("tiny_imagenet", "imagenet"):
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    else:
        raise SedonaError(f"model.stem: unknown stem {stem!r} (known: cifar, tiny_imagenet, imagenet)")
    mods: dict[str, nn.Module] = {"conv1": conv, "bn1": nn.BatchNorm2d(out_channels), "relu": nn.ReLU(inplace=True)}
    if stem == "imagenet":
        mods["maxpool"] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return nn.Sequential(OrderedDict(mods))
