"""Parameter and FLOP (multiply-add) counts against hand computation and the paper's Table 1."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sedona_runtime.analysis.costs import MacCounter, head_costs, model_costs, param_count
from sedona_runtime.heads import HeadSpec, build_head, list_heads
from sedona_runtime.models import ModelConfig, build_model
from sedona_runtime.utils.errors import SedonaError


def test_mac_counter_on_a_hand_computed_net():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8x8x8 outputs x 3*3*3 = 13,824
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),  # 4x4x8 outputs x 1*3*3 = 1,152
        nn.Flatten(),
        nn.Linear(128, 10),  # 10 x 128 = 1,280
    )
    counter = MacCounter()
    with counter.attached(net):
        net(torch.zeros(1, 3, 8, 8))
    assert counter.total == 13_824 + 1_152 + 1_280
    net(torch.zeros(1, 3, 8, 8))  # detached afterwards: no more counting
    assert counter.total == 16_256


def _resnet50_macs_by_hand() -> int:
    """Conv + FC multiply-adds of torchvision's ResNet-50 at 224x224, from the architecture alone."""
    macs = 112 * 112 * 64 * 3 * 7 * 7  # stem conv; max-pool to 56
    size, inplanes = 56, 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        planes = 64 * 2**stage
        for b in range(blocks):
            out = size // 2 if stage > 0 and b == 0 else size
            macs += size * size * inplanes * planes  # 1x1 reduce (stride sits on the 3x3)
            macs += out * out * planes * planes * 9  # 3x3
            macs += out * out * planes * planes * 4  # 1x1 expand
            if b == 0:
                macs += out * out * inplanes * planes * 4  # projection shortcut
            size, inplanes = out, planes * 4
    return macs + 2048 * 1000


def test_resnet50_flops_and_params_at_imagenet_scale():
    costs = model_costs(ModelConfig(arch="resnet50", stem="imagenet", num_classes=1000), (3, 224, 224))
    assert costs["flops"] == _resnet50_macs_by_hand() == 4_089_184_256
    assert round(costs["flops"] / 1e9, 2) == 4.09  # torchvision's documented "4.09 GFLOPS"
    assert costs["params"] == 25_557_032  # torchvision.models.resnet50
    assert len(costs["layers"]) == 16 and costs["layers"][0]["index"] == 1
    assert costs["params"] == sum(l["params"] for l in costs["layers"]) + costs["classifier"]["params"]
    assert costs["flops"] == sum(l["flops"] for l in costs["layers"]) + costs["classifier"]["flops"]


# Paper Table 1: relative params / FLOPs (%) of each head over ResNet-101 on ImageNet.
TABLE_1 = {
    "aux1": (6.38, 1.02),
    "aux2": (7.59, 1.35),
    "aux3": (9.68, 1.43),
    "aux4": (12.37, 1.68),
    "mlp_sr": (129.33, 1.34),
}


def test_heads_reproduce_table_1_at_a_1024_channel_resnet101_layer():
    # Table 1 does not say which layer it measures; a 1024-channel 14x14 layer (23 of the 33) reproduces
    # every aux and MLP-SR entry to the printed precision (0.01 points: the paper's own rounding).
    costs = model_costs(ModelConfig(arch="resnet101", stem="imagenet", num_classes=1000), (3, 224, 224))
    assert costs["params"] == 44_549_160
    layer = next(l for l in costs["layers"] if l["channels"] == 1024 and l["size"] == 14)
    for name, (rel_params, rel_flops) in TABLE_1.items():
        head = layer["heads"][name]
        assert abs(100 * head["params"] / costs["params"] - rel_params) <= 0.01, name
        assert abs(100 * head["flops"] / costs["flops"] - rel_flops) <= 0.01, name
    # PredSim (issue 14, item 8): with the release's prediction-input bound (512, heads.predsim.PRED_FEATURES)
    # the 14x14 map pools to 1x1, 1024 decoder inputs: 23.48% params, as printed; within the 5%.
    # FLOPs: 23.72 vs 23.63 (its 3x3 similarity conv dominates; the paper's count of the rest is unknown).
    predsim = layer["heads"]["predsim"]
    share = 100 * predsim["params"] / costs["params"]
    assert abs(share - 23.48) <= 0.05 * 23.48 and abs(share - 23.48) <= 0.01
    assert abs(100 * predsim["flops"] / costs["flops"] - 23.63) < 0.15


def test_head_costs_match_the_built_head():
    spec = HeadSpec(in_channels=64, in_size=8, num_classes=10, width=32)
    for name in list_heads():
        costs = head_costs(name, spec)
        assert costs["params"] == param_count(build_head(name, spec)), name
    # aux1 by hand: 1x1 64->16 at 8x8, depthwise 3x3 at 4x4, 1x1 16->32 at 4x4, FC 32->10.
    assert head_costs("aux1", spec)["flops"] == 64 * 64 * 16 + 16 * 16 * 9 + 16 * 16 * 32 + 32 * 10


def test_model_costs_agree_with_the_real_model():
    cfg = ModelConfig(arch="small", num_classes=10)
    costs = model_costs(cfg, (3, 32, 32))
    assert costs["params"] == param_count(build_model(cfg))
    assert [(l["channels"], l["size"]) for l in costs["layers"]] == [(16, 32), (32, 16), (32, 16), (64, 8), (64, 8), (128, 4)]
    # 3x3 convs by hand (layer i: in * out * 9 * size^2 of the conv output, before its pooling).
    convs = [(3, 16, 32), (16, 32, 32), (32, 32, 16), (32, 64, 16), (64, 64, 8), (64, 128, 8)]
    assert [l["flops"] for l in costs["layers"]] == [i * o * 9 * s * s for i, o, s in convs]
    assert set(costs["layers"][0]["heads"]) == set(list_heads())


def test_bad_input_shapes_are_clear_errors():
    with pytest.raises(SedonaError, match="channels"):
        model_costs(ModelConfig(arch="small"), (1, 32, 32))
    with pytest.raises(SedonaError, match="too small"):
        model_costs(ModelConfig(arch="vgg19"), (3, 8, 8))
    with pytest.raises(SedonaError, match="model.arch"):
        model_costs(ModelConfig(arch="nope"), (3, 32, 32))
