"""Our resnet50/101/152 at the ImageNet stem and width 1 are torchvision's: the torchvision format maps their keys
back exactly (same logits, bit for bit); any other built-in network is refused with the reason and what works."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sedona_runtime.models import ModelConfig, build_model
from sedona_runtime.trained.torchvision_state import torchvision_state
from sedona_runtime.utils.errors import SedonaError


def _run(**model) -> SimpleNamespace:
    cfg = ModelConfig(**model)
    net = build_model(cfg).eval() if model.get("arch") == "resnet50" and model.get("stem") == "imagenet" else None
    return SimpleNamespace(cfg=SimpleNamespace(model=cfg), model=net)


def test_our_imagenet_resnet50_loads_into_torchvisions_with_the_same_logits():
    import torchvision

    torch.manual_seed(0)
    run = _run(arch="resnet50", num_classes=7, stem="imagenet", width=1.0)
    with torch.no_grad():  # trained-looking batch-norm statistics, so eval mode is not the identity
        for m in run.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5), m.weight.uniform_(0.5, 1.5)
    state, builder = torchvision_state(run)
    assert builder == "torchvision.models.resnet50"
    tv = torchvision.models.resnet50(num_classes=7)
    tv.load_state_dict(state, strict=True)  # every key of torchvision's, nothing more
    tv.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(tv(x), run.model(x))


@pytest.mark.parametrize("model,words", [
    (dict(arch="resnet50", stem="cifar", width=1.0), ["stem is 'cifar'"]),
    (dict(arch="resnet152", stem="imagenet", width=0.25), ["width is 0.25"]),
    (dict(arch="vgg19", width=0.25), ["vgg19 has no torchvision counterpart"]),
    (dict(arch="small"), ["small has no torchvision counterpart"]),
])
def test_other_builtin_networks_are_refused_with_the_reason(model, words):
    with pytest.raises(SedonaError) as info:
        torchvision_state(_run(**model))
    text = str(info.value)
    assert all(w in text for w in words) and "--format pt2" in text and len(text.splitlines()) == 1, text
