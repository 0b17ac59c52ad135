"""The layered ResNets/VGG are torchvision's networks: same parameter counts, same function."""
from __future__ import annotations

import pytest
import torch
import torchvision

from sedona_runtime.models import ModelConfig, build_model
from sedona_runtime.models.torchvision_compat import from_torchvision_resnet
from sedona_runtime.utils.errors import SedonaError


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "arch,tv_name", [("resnet50", "resnet50"), ("resnet101", "resnet101"), ("resnet152", "resnet152"), ("vgg19", "vgg19_bn")]
)
def test_parameter_counts_equal_torchvision(arch, tv_name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        ours = build_model(ModelConfig(arch=arch, stem="imagenet", num_classes=1000, width=1.0))
        theirs = getattr(torchvision.models, tv_name)()
    theirs_params = dict(theirs.named_parameters())
    if arch == "vgg19":
        # Our VGG-19 convs have no bias, like the release's ConvBNAct (batch norm cancels it): torchvision's
        # 16 conv biases (64*2 + 128*2 + 256*4 + 512*8 = 5,504 parameters at width 1) are all it has more.
        convs = [n for n, m in theirs.named_modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) == 16 and sum(theirs_params[f"{n}.bias"].numel() for n in convs) == 5504
        for n in convs:
            del theirs_params[f"{n}.bias"]
    assert _count(ours) == sum(p.numel() for p in theirs_params.values())
    assert sorted(p.shape for p in ours.parameters()) == sorted(p.shape for p in theirs_params.values())


def _random_torchvision(tv_name: str) -> torch.nn.Module:
    """torchvision's network filled with random weights and non-default BN statistics/affines, so
    that any mis-mapped key changes the output (built on meta, then filled: no slow initialisation)."""
    with torch.device("meta"):
        tv = getattr(torchvision.models, tv_name)(num_classes=10)
    tv = tv.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in tv.state_dict().items():
            if not t.is_floating_point():
                t.zero_()  # num_batches_tracked
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() > 1:  # conv / fc weights, He-scaled so 50 blocks stay finite
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))
            else:  # biases, running means
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return tv


@pytest.mark.parametrize("tv_name", ["resnet50", "resnet152"])
def test_torchvision_weights_give_the_same_forward(tv_name):
    tv = _random_torchvision(tv_name)
    ours = from_torchvision_resnet(tv).eval()
    assert ours.num_layers == {"resnet50": 16, "resnet152": 50}[tv_name]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = tv(x)
        assert torch.isfinite(expected).all() and expected.abs().max() > 0
        # The layered net runs the very same modules in the same order, so the result is bitwise equal.
        assert torch.equal(ours(x), expected)
    assert all(p.requires_grad for p in ours.parameters())
    # A copy, not a view: training the layered net must not touch the torchvision model.
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(ours.parameters(), tv.parameters()))


def test_from_torchvision_rejects_other_resnets():
    with torch.device("meta"):
        tv = torchvision.models.resnet18()
    with pytest.raises(SedonaError, match="ResNet-50/101/152"):
        from_torchvision_resnet(tv)
