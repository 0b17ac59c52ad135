"""DGL's MLP-SR auxiliary head (Belilovsky et al. 2020), as the SEDONA release builds it (decoder.py MLPSR)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sedona_runtime.heads.base import Head, HeadSpec, conv_bn_relu, init_weights
from sedona_runtime.heads.registry import register_head

NUM_CONVS = 3  # n_lin in the reference code
NUM_HIDDEN = 3  # mlp_layers in the reference code: 3 hidden Linear-BN-ReLU, then the output Linear


class MLPSRHead(Head):
    """Average pool to s = ceil(size/4), three 1x1 conv+BN+ReLU at the input width C, average pool to
    m = min(s, 2), then an MLP of width m*m*C: three Linear+BN1d+ReLU and a final Linear.

    Input (N, C, size, size) -> logits (N, num_classes). m is the release's `mlp_in_size` (its
    decoder.py MLPSR): on maps of 4x4 and smaller s = 1, so the MLP sees the 1x1 map (width C, not
    4C). eugenium/DGL's own code (auxiliary_nets_study/models.py) always pools to 2x2, which on such
    maps only copies the one pixel four times: 8x the parameters for the same function class (VGG-19
    layers 9-15: 846,090 -> 101,514 per head). The head width of HeadSpec is not used: DGL sizes
    everything from the input channels. At a 1024-channel 14x14 layer of ResNet-101 (m = 2) the
    head's cost reproduces the paper's Table 1 (MLP-SR: 129% params, 1.34% FLOPs), which is how the
    reading of "3-layer MLP" was checked.
    """

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        c = spec.in_channels
        self.pre_pool = nn.AdaptiveAvgPool2d(math.ceil(spec.in_size / 4))
        self.convs = nn.Sequential(*[conv_bn_relu(c, c, 1) for _ in range(NUM_CONVS)])
        side = min(math.ceil(spec.in_size / 4), 2)  # the release's mlp_in_size
        self.post_pool = nn.AdaptiveAvgPool2d(side)
        feat = side * side * c
        mlp: list[nn.Module] = []
        for _ in range(NUM_HIDDEN):
            mlp += [nn.Linear(feat, feat), nn.BatchNorm1d(feat), nn.ReLU(inplace=True)]
        mlp.append(nn.Linear(feat, spec.num_classes))
        self.mlp = nn.Sequential(*mlp)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.post_pool(self.convs(self.pre_pool(x)))
        return self.mlp(torch.flatten(out, 1))


@register_head("mlp_sr")
def build_mlp_sr(spec: HeadSpec) -> Head:
    return MLPSRHead(spec)
