"""Per-layer and per-head parameter counts of VGG-19 and ResNet-50 (0.25x, CIFAR-10) equal the release's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sedona_runtime.analysis.costs import model_costs
from sedona_runtime.models import ModelConfig

# Computed once from the release (see its "source"): encoder params per layer, and per boundary layer
# aux1..aux4, mlp_sr and predsim head params.
GOLDEN = json.loads((Path(__file__).resolve().parent / "data" / "release-head-params.json").read_text())


@pytest.mark.parametrize("arch", ["vgg19", "resnet50"])
def test_every_layer_and_head_has_the_release_parameter_count(arch):
    golden = GOLDEN["architectures"][arch]
    costs = model_costs(ModelConfig(arch=arch, width=0.25, stem="cifar", num_classes=10), (3, 32, 32))
    assert [layer["params"] for layer in costs["layers"]] == golden["encoder"]
    for i, layer in enumerate(costs["layers"][:-1]):
        heads = layer["heads"]
        assert [heads[f"aux{j}"]["params"] for j in (1, 2, 3, 4)] == golden["aux"][i], (arch, i + 1)
        assert heads["mlp_sr"]["params"] == golden["mlp_sr"][i], (arch, i + 1)
        assert heads["predsim"]["params"] == golden["predsim"][i], (arch, i + 1)


def test_small_maps_pool_to_one_pixel_like_the_release():
    # Issue 22: VGG-19 layers 9-15 (2x2 maps) and ResNet-50 layers 14-15 (4x4 maps) pool to 1x1 before
    # the MLP; always pooling to 2x2 gave 846,090 and 13.4 M parameters per head there.
    vgg, r50 = (GOLDEN["architectures"][a]["mlp_sr"] for a in ("vgg19", "resnet50"))
    assert vgg[8:15] == [101_514] * 7
    assert r50[13] == r50[14] and 1_500_000 < r50[13] < 1_700_000
