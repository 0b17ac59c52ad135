"""to_layered: a user's network (nn.Sequential, list of modules, torchvision ResNet/VGG) in the layered form."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn

from sedona_runtime.heads.base import Head
from sedona_runtime.heads.final import SequentialHead
from sedona_runtime.models.layered import LayeredNet
from sedona_runtime.utils.errors import SedonaError

# Modules that compute on (N, C, H, W) feature maps: the layers end with the last module holding one.
_FEATURE_TYPES = (nn.modules.conv._ConvNd, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _is_feature_module(module: nn.Module) -> bool:
    return any(isinstance(m, _FEATURE_TYPES) for m in module.modules())


def default_classifier_size(modules: Sequence[nn.Module]) -> int:
    """How many trailing modules form the classifier when the caller does not say.

    Everything after the last module that holds a convolution or a spatial normalization (typically
    pooling, flatten, dropout, activations and linear layers); when the network ends with such a
    module, the last module alone.
    """
    last_feature = max((i for i, m in enumerate(modules) if _is_feature_module(m)), default=-1)
    tail = len(modules) - 1 - last_feature
    return tail if 0 < tail < len(modules) else 1


def from_modules(modules: Sequence[nn.Module] | nn.Sequential, *, classifier: int | None = None,
                 arch: str = "") -> LayeredNet:
    """Each module is a layer (a split point after each) but the last `classifier` modules, which are the
    network's classifier (default: `default_classifier_size`). Module names of an nn.Sequential are kept
    in the classifier; the modules are shared, not copied.

    Raises SedonaError when there is no layer left or an entry is not an nn.Module.
    """
    if isinstance(modules, nn.Sequential):
        named = list(modules.named_children())
    else:
        named = [(str(i), m) for i, m in enumerate(modules)]
    for name, m in named:
        if not isinstance(m, nn.Module):
            raise SedonaError(f"{arch or 'network'}: entry {name} is a {type(m).__name__}, not an nn.Module")
    if len(named) < 2:
        raise SedonaError(f"{arch or 'network'}: needs at least two modules (layers, then a classifier), "
                          f"got {len(named)}")
    n = default_classifier_size([m for _, m in named]) if classifier is None else int(classifier)
    if not 1 <= n < len(named):
        raise SedonaError(f"{arch or 'network'}: classifier must be 1..{len(named) - 1} trailing modules, got {n}")
    layers = [m for _, m in named[:-n]]
    tail = named[-n:]
    if n == 1 and isinstance(tail[0][1], Head):
        head: Head = tail[0][1]
    else:
        head = SequentialHead(OrderedDict(tail))
    return LayeredNet(layers, head, arch=arch)


def to_layered(model: object, *, classifier: int | None = None, arch: str = "") -> LayeredNet:
    """The layered form of `model`, which the whole product (trainer, pipeline, search, planner) uses.

    - a LayeredNet: returned as it is;
    - a torchvision ResNet (resnet18/34/50/101/152, wide_resnet50_2, resnext50_32x4d, ...): each
      residual block a layer, the stem in layer 1;
    - a torchvision VGG (vgg11_bn .. vgg19_bn, or without batch norm): each convolution a layer, with
      the batch norm, ReLU and pooling after it;
    - an nn.Sequential, nn.ModuleList or a list/tuple of modules: each module a layer, the last `classifier` modules the
      classifier (default: everything after the last convolution/normalization; see `from_modules`).

    The result holds the very modules of `model`: the same parameters, the same forward.
    Raises SedonaError for anything else.
    """
    from sedona_runtime.models.torchvision_wrap import is_resnet, is_vgg, wrap_resnet, wrap_vgg

    if isinstance(model, LayeredNet):
        if arch and not model.arch:
            model.arch = arch
        return model
    if isinstance(model, nn.Module) and is_resnet(model):
        return wrap_resnet(model, arch)
    if isinstance(model, nn.Module) and is_vgg(model):
        return wrap_vgg(model, arch)
    if isinstance(model, (nn.Sequential, list, tuple)):
        return from_modules(model, classifier=classifier, arch=arch)
    if isinstance(model, nn.ModuleList):
        return from_modules(list(model), classifier=classifier, arch=arch)
    raise SedonaError(f"{arch or 'network'}: got a {type(model).__name__}; expected an nn.Sequential or a list of "
                      "modules (each a layer, the classifier last), a torchvision ResNet or VGG, or a LayeredNet")


def build_user_model(spec: str, num_classes: int, import_root: str | None = None) -> LayeredNet:
    """The network `spec` ('my_pkg.nets:build') builds: `build(num_classes=num_classes)` in layered form.

    `import_root` goes on sys.path first (a block process or a later command started elsewhere finds
    the module there). Raises SedonaError naming the import path for any failure of the user's code.
    """
    from sedona_runtime.utils.imports import call_user, load_callable

    fn = load_callable(spec, import_root, what="model")
    return to_layered(call_user(fn, spec, "model", num_classes=num_classes), arch=spec)
