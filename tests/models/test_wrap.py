"""to_layered: torchvision's ResNets/VGGs and a user's nn.Sequential in the layered form, exactly as they are."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from sedona_runtime.heads import HeadSpec, build_head, list_heads
from sedona_runtime.models import ModelConfig, build_model, layer_output_shapes, to_layered
from sedona_runtime.models.layered import check_output
from sedona_runtime.training.block import head_spec_fn
from sedona_runtime.utils.errors import SedonaError

RESNETS = {"resnet18": 8, "resnet34": 16, "resnet50": 16, "resnet101": 33, "resnet152": 50, "wide_resnet50_2": 16,
           "resnext50_32x4d": 16}
VGGS = {"vgg11_bn": 8, "vgg13_bn": 10, "vgg16_bn": 13, "vgg19_bn": 16}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(RESNETS) + sorted(VGGS))
def test_torchvision_networks_keep_their_parameters(name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        tv = getattr(torchvision.models, name)(num_classes=10)
        net = to_layered(tv, arch=name)
    assert net.num_layers == {**RESNETS, **VGGS}[name]  # residual blocks (ResNet) or convolutions (VGG) as layers
    assert _count(net) == _count(tv)
    # The very same tensors: training the layered net trains torchvision's modules.
    assert {id(p) for p in net.parameters()} == {id(p) for p in tv.parameters()}
    shapes = layer_output_shapes(net, (3, 32, 32))
    assert [c for c, _, _ in shapes] == [net.layer_channels(l) for l in range(net.num_layers)]
    if "resnet" in name and name not in ("resnet18", "resnet34"):  # bottleneck: Nc is the inner width
        assert net.layer_head_channels(0) == tv.layer1[0].conv1.out_channels


def _random_fill(tv: nn.Module) -> nn.Module:
    """Random weights and BN statistics (any mis-ordered module changes the output), without torchvision's
    slow initialisation: built on meta, then filled."""
    tv = tv.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in tv.state_dict().items():
            if not t.is_floating_point():
                t.zero_()
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() > 1:  # He-uniform, in place: VGG's 100M-weight classifier fills in a fraction of a second
                bound = (6.0 / t[0].numel()) ** 0.5
                t.uniform_(-bound, bound, generator=g)
            else:
                t.copy_(0.1 * torch.randn(t.shape, generator=g) + (1.0 if name.endswith("weight") else 0.0))
    return tv


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg11_bn"])
def test_torchvision_forward_is_unchanged(name):
    with torch.device("meta"):
        tv = getattr(torchvision.models, name)(num_classes=10)
    tv = _random_fill(tv)
    net = to_layered(tv).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = tv(x)
        assert torch.isfinite(want).all() and want.abs().max() > 0
        assert torch.equal(net(x), want)  # the same modules in the same order: bitwise equal


def _user_sequential() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU()),
        nn.Sequential(nn.Conv2d(5, 7, 3, stride=2, padding=1), nn.ReLU()),
        nn.Conv2d(7, 9, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(9, 3),
    )


def test_sequential_each_module_a_layer_classifier_after_the_last_conv():
    seq = _user_sequential().eval()
    net = to_layered(seq).eval()
    # Layers: the two blocks and the bare conv; the classifier: ReLU, pool, flatten, linear.
    assert net.num_layers == 3
    assert [type(m).__name__ for m in net.classifier] == ["ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear"]
    x = torch.randn(4, 3, 13, 13)
    with torch.no_grad():
        assert torch.equal(net(x), seq(x))
    assert layer_output_shapes(net, (3, 13, 13)) == [(5, 13, 13), (7, 7, 7), (9, 4, 4)]
    # An explicit split: only the last module is the classifier (pool and flatten become layers... until
    # the shapes are traced, which refuses a 2-D layer output with a clear line).
    net2 = to_layered(nn.ModuleList(seq), classifier=1)
    assert net2.num_layers == 6
    with pytest.raises(SedonaError, match="layer 6 \\(Flatten\\) outputs \\(1, 9\\).*classifier"):
        layer_output_shapes(net2, (3, 13, 13))
    # Names of a Sequential built from an OrderedDict are kept in the classifier.
    named = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
                                      fc=nn.Linear(4, 2)))
    assert list(to_layered(named).classifier.state_dict()) == ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("bad,words", [
    (nn.Linear(3, 3), ["Linear", "nn.Sequential"]),
    (nn.Sequential(nn.Linear(3, 3)), ["at least two modules"]),
    ([nn.Conv2d(3, 3, 1), "fc"], ["entry 1 is a str"]),
])
def test_what_cannot_be_wrapped_is_one_clear_line(bad, words):
    with pytest.raises(SedonaError) as err:
        to_layered(bad, arch="mine")
    assert all(w in str(err.value) for w in words), str(err.value)


def test_auxiliary_heads_size_themselves_from_any_layer_shape():
    """Odd channel counts (5, 7, 9) and map sizes (13, 7, 4, then 1x1): every head of the registry builds,
    computes its local loss and backpropagates after every layer."""
    seq = nn.Sequential(*_user_sequential()[:3], nn.Conv2d(9, 11, 3, stride=4, padding=1), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(11, 3))
    net = to_layered(seq)
    spec_fn = head_spec_fn(net, (3, 13, 13), num_classes=3, width=8)
    shapes = layer_output_shapes(net, (3, 13, 13))
    assert [s[1] for s in shapes] == [13, 7, 4, 1]
    x = torch.randn(4, 3, 13, 13)
    y = torch.tensor([0, 1, 2, 0])
    for l in range(1, net.num_layers + 1):
        spec = spec_fn(l)
        assert (spec.in_channels, spec.in_size, spec.nc) == (shapes[l - 1][0], shapes[l - 1][1], None)
        feats = net.features(x, upto=l - 1).detach().requires_grad_()
        for name in list_heads():
            loss, logits = build_head(name, spec).train().local_loss(feats, y, 0.1)
            loss.backward()
            assert logits.shape == (4, 3) and torch.isfinite(loss), (name, l)
    assert HeadSpec(5, 13, 3).resolved_nc == 1  # Nc defaults to in_channels // 4, at least 1


def test_user_network_by_import_path(user_pkg):
    cfg = ModelConfig(arch="byo_user_pkg.nets:build", num_classes=4)
    net = build_model(cfg)
    assert net.arch == cfg.arch and net.num_layers == 4
    check_output(net, (3, 12, 12), 4)
    with pytest.raises(SedonaError, match=r"outputs \(1, 7\).*expected logits of shape \(1, 4\)"):
        check_output(build_model(ModelConfig(arch="byo_user_pkg.nets:wrong_classes", num_classes=4)), (3, 12, 12), 4)
    with pytest.raises(SedonaError, match="model.width: applies to the built-in architectures only"):
        build_model(ModelConfig(arch=cfg.arch, width=0.5))
    with torch.device("meta"):  # torchvision's builders take num_classes as they are
        tv = build_model(ModelConfig(arch="torchvision.models:resnet18", num_classes=7))
    assert tv.classifier.fc.out_features == 7
