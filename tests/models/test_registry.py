"""The model zoo: registry, layer counts, stems, width, and forward/backward of every model."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sedona_runtime.models import LayeredNet, ModelConfig, build_model, layer_output_shapes, list_models
from sedona_runtime.utils.config import from_dict, to_dict
from sedona_runtime.utils.errors import SedonaError

EXPECTED_LAYERS = {"small": 6, "small_resnet": 4, "vgg19": 16, "resnet50": 16, "resnet101": 33, "resnet152": 50}


def test_registry_lists_the_zoo():
    assert set(list_models()) == set(EXPECTED_LAYERS)


def _meta_model(cfg: ModelConfig) -> LayeredNet:
    with torch.device("meta"):
        return build_model(cfg)


@pytest.mark.parametrize("arch", sorted(EXPECTED_LAYERS))
def test_layer_counts_and_channel_bookkeeping(arch):
    model = _meta_model(ModelConfig(arch=arch, stem="imagenet", num_classes=1000))
    assert model.num_layers == EXPECTED_LAYERS[arch]
    shapes = layer_output_shapes(model, (3, 224, 224))
    assert len(shapes) == model.num_layers
    for l, (c, h, w) in enumerate(shapes):
        assert c == model.layer_channels(l)
        assert h == w
        assert 1 <= model.layer_head_channels(l) <= c
    with pytest.raises(IndexError):
        model.layer_channels(model.num_layers)


def test_bottleneck_head_channels_are_inner_width():
    model = _meta_model(ModelConfig(arch="resnet50", stem="imagenet"))
    assert [model.layer_head_channels(l) for l in (0, 3, 7, 13)] == [64, 128, 256, 512]
    assert [model.layer_channels(l) for l in (0, 3, 7, 13)] == [256, 512, 1024, 2048]


@pytest.mark.parametrize(
    "stem,size,first,last", [("cifar", 32, 32, 4), ("tiny_imagenet", 64, 32, 4), ("imagenet", 224, 56, 7)]
)
def test_stems_set_the_spatial_sizes(stem, size, first, last):
    model = _meta_model(ModelConfig(arch="resnet50", stem=stem))
    shapes = layer_output_shapes(model, (3, size, size))
    assert shapes[0][1] == first and shapes[-1][1] == last
    stem_mods = model.layers[0].stem
    assert stem_mods.conv1.kernel_size == ((3, 3) if stem == "cifar" else (7, 7))
    assert hasattr(stem_mods, "maxpool") == (stem == "imagenet")


def test_vgg_pooling_belongs_to_the_start_of_the_next_layer():
    # Issue 14, item 5: heads attach before the pool, as in the release (models/vgg.py), so layer 2 of a
    # CIFAR VGG-19 is 32x32; the pool opens layers 3, 5, 9 and 13, and the last one belongs to the classifier.
    model = _meta_model(ModelConfig(arch="vgg19", width=0.25))
    sizes = [s[1] for s in layer_output_shapes(model, (3, 32, 32))]
    assert sizes == [32, 32, 16, 16, 8, 8, 8, 8, 4, 4, 4, 4, 2, 2, 2, 2]
    assert [l for l, layer in enumerate(model.layers, 1) if isinstance(layer[0], nn.MaxPool2d)] == [3, 5, 9, 13]
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 16
    assert isinstance(model.classifier.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize("stem,size,width,features,hidden", [
    ("cifar", 32, 0.25, 128, 1024),  # the release's CIFAR-scale network: 1024 hidden units
    ("tiny_imagenet", 64, 1.0, 512 * 2 * 2, 4096),  # feat_mult 4: 4096, on the flattened 2x2 map
    ("imagenet", 224, 1.0, 512 * 7 * 7, 4096),  # torchvision's classifier
])
def test_vgg_classifier_has_the_release_widths(stem, size, width, features, hidden):
    # Issue 14, item 6: Linear(features, 1024 * feat_mult), ReLU, Linear, ReLU, Linear; no dropout.
    model = _meta_model(ModelConfig(arch="vgg19", stem=stem, width=width, num_classes=10))
    linears = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(features, hidden), (hidden, hidden), (hidden, 10)]
    assert model(torch.zeros(2, 3, size, size, device="meta")).shape == (2, 10)


def test_width_multiplier_scales_channels():
    full = _meta_model(ModelConfig(arch="resnet101"))
    quarter = _meta_model(ModelConfig(arch="resnet101", width=0.25))
    assert [quarter.layer_channels(l) * 4 for l in range(33)] == [full.layer_channels(l) for l in range(33)]


# Big architectures at width 0.25 on tiny inputs keep this under a few seconds on 2 cores.
FORWARD_CASES = [
    ("small", 1.0, "cifar", 32),
    ("small", 0.5, "imagenet", 64),
    ("small_resnet", 1.0, "tiny_imagenet", 32),
    ("vgg19", 0.25, "cifar", 32),
    ("resnet50", 0.25, "cifar", 16),
    ("resnet101", 0.25, "tiny_imagenet", 32),
    ("resnet152", 0.25, "imagenet", 32),
]


def test_forward_cases_cover_every_registered_model():
    assert {case[0] for case in FORWARD_CASES} == set(list_models())


@pytest.mark.parametrize("arch,width,stem,size", FORWARD_CASES)
def test_every_model_runs_forward_and_backward(arch, width, stem, size):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, num_classes=7, stem=stem, width=width))
    x = torch.randn(2, 3, size, size, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 7)
    logits.logsumexp(1).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("arch", ["small", "small_resnet", "vgg19"])
def test_layered_forward_equals_sequential(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, width=0.25)).eval()
    seq = nn.Sequential(*model.layers, model.classifier)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # Same modules, same order, same kernels: bitwise equal.
        assert torch.equal(model(x), seq(x))
        assert torch.equal(model.features(x, upto=2), nn.Sequential(*model.layers[:3])(x))


def test_model_config_round_trips_through_json():
    cfg = ModelConfig(arch="resnet50", num_classes=200, stem="tiny_imagenet", width=0.5)
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "cfg,field",
    [
        (ModelConfig(arch="resnet18"), "model.arch"),
        (ModelConfig(stem="mnist"), "model.stem"),
        (ModelConfig(width=0), "model.width"),
        (ModelConfig(num_classes=0), "model.num_classes"),
        (ModelConfig(in_channels=0), "model.in_channels"),
    ],
)
def test_bad_config_is_one_clear_error(cfg, field):
    with pytest.raises(SedonaError, match=field):
        build_model(cfg)
