"""SEDONA's auxiliary heads aux1..aux4 (paper Sec. 4.1, Appendix D.2, Table 9; the release's decoder.py)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from sedona_runtime.heads.base import Head, HeadSpec, conv_bn_relu, init_weights
from sedona_runtime.heads.registry import register_head

EXPANSION = 4  # inverted residual expansion ratio (Table 9)


def _stride_for(size: int, stride: int) -> int:
    # A 1x1 map cannot be halved: the stride-2 step then runs at stride 1 (same width).
    return stride if size > 1 else 1


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (BN, ReLU), 3x3 depthwise (BN, ReLU), 1x1 linear project (BN).

    The identity shortcut is added when stride is 1 and the width is unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int = EXPANSION) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, hidden, 1),
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.use_shortcut else out


class AuxHead(Head):
    """aux<depth>: pointwise conv to Nc, depthwise 3x3 stride 2, (depth-1) inverted residual blocks
    from [Nc s1, 1.5Nc s2, 1.5Nc s1], pointwise conv to the head width, global average pool, FC.

    On tiny maps the release's rule (decoder.py, PredConvLightDecoder) decides the stride-2 block: it
    tracks the map size as in_size // 2 after the depthwise conv and runs the block at stride 2, widening
    to 1.5Nc = Nc + Nc // 2, only when that size is at least 2; otherwise the block runs at stride 1 and
    keeps Nc (so the later stride-1 block stays at Nc too). The depthwise conv on a 1x1 map runs at
    stride 1 (same output as the release's stride 2 there).
    """

    def __init__(self, spec: HeadSpec, depth: int) -> None:
        super().__init__()
        if not 1 <= depth <= 4:
            raise ValueError(f"aux head depth must be 1..4, got {depth}")
        nc = spec.resolved_nc
        stride = _stride_for(spec.in_size, 2)
        mods: list[nn.Module] = [conv_bn_relu(spec.in_channels, nc, 1), conv_bn_relu(nc, nc, 3, stride, groups=nc)]
        tracked = spec.in_size // 2  # the release's bookkeeping of the map size (floor division)
        channels = nc
        for i in range(depth - 1):
            s = 2 if (i == 1 and tracked >= 2) else 1  # only the second block may downsample (Table 9)
            out_channels = channels + nc // 2 if s == 2 else channels
            mods.append(InvertedResidual(channels, out_channels, s))
            channels = out_channels
            tracked = tracked // 2 if s == 2 else tracked
        mods.append(conv_bn_relu(channels, spec.width, 1))
        self.features = nn.Sequential(*mods)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(spec.width, spec.num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def _register(depth: int) -> None:
    @register_head(f"aux{depth}")
    def build(spec: HeadSpec) -> Head:
        return AuxHead(spec, depth)


for _depth in (1, 2, 3, 4):
    _register(_depth)
