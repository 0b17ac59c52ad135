"""torchvision's ResNets and VGGs taken as they are into the layered form: residual blocks (or convs) as layers."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from sedona_runtime.heads.final import SequentialHead
from sedona_runtime.models.layered import LayeredNet


def is_resnet(model: nn.Module) -> bool:
    """A torchvision ResNet (resnet18..152, wide_resnet*, resnext*) with torchvision's own forward."""
    from torchvision.models import ResNet

    return isinstance(model, ResNet) and type(model).forward is ResNet.forward


def is_vgg(model: nn.Module) -> bool:
    """A torchvision VGG (vgg11..19, with or without batch norm) with torchvision's own forward."""
    from torchvision.models import VGG

    return isinstance(model, VGG) and type(model).forward is VGG.forward


def wrap_resnet(model: nn.Module, arch: str = "") -> LayeredNet:
    """Each residual block is a layer; the stem (conv1, bn1, relu, maxpool) belongs to layer 1 (paper
    Appendix D.1); the classifier is avgpool, flatten and fc. The modules are `model`'s own (shared,
    not copied), so the layered net has torchvision's parameters and computes torchvision's forward.

    Nc of a bottleneck block is its inner width (conv1's output); a basic block takes the default.
    """
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
    stem = OrderedDict(conv1=model.conv1, bn1=model.bn1, relu=model.relu, maxpool=model.maxpool)
    layers: list[nn.Module] = [nn.Sequential(OrderedDict(**stem, block=blocks[0])), *blocks[1:]]
    channels, head_channels = [], []
    for b in blocks:
        bottleneck = hasattr(b, "conv3")
        channels.append((b.bn3 if bottleneck else b.bn2).num_features)
        head_channels.append(b.conv1.out_channels if bottleneck else None)
    # torch.flatten(x, 1) in torchvision's forward is nn.Flatten(1): the same operation.
    classifier = SequentialHead(OrderedDict(avgpool=model.avgpool, flatten=nn.Flatten(1), fc=model.fc))
    return LayeredNet(layers, classifier, channels, head_channels, arch=arch or type(model).__name__.lower())


def wrap_vgg(model: nn.Module, arch: str = "") -> LayeredNet:
    """Each convolution is a layer, with the batch norm, ReLU and max-pool that follow it; the classifier is
    avgpool, flatten and torchvision's MLP (dropout included). The modules are `model`'s own (shared)."""
    groups: list[list[nn.Module]] = []
    pending: list[nn.Module] = []  # modules before the first convolution join layer 1
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            groups.append([*pending, m])
            pending = []
        elif groups:
            groups[-1].append(m)
        else:
            pending.append(m)
    layers = [nn.Sequential(*g) for g in groups]
    channels = [next(m.out_channels for m in g if isinstance(m, nn.Conv2d)) for g in groups]
    classifier = SequentialHead(OrderedDict(avgpool=model.avgpool, flatten=nn.Flatten(1),
                                            classifier=model.classifier))
    return LayeredNet(layers, classifier, channels, None, arch=arch or "vgg")
