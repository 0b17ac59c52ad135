"""Load torchvision's sequential ResNets into the layered form (proves the layered form is the same net)."""
from __future__ import annotations


import torch
from torch import nn

from sedona_runtime.models.layered import LayeredNet
from sedona_runtime.models.registry import ModelConfig, build_model
from sedona_runtime.models.resnet import DEPTHS
from sedona_runtime.utils.errors import SedonaError



def torchvision_resnet_key_map(depths: tuple[int, ...]) -> dict[str, str]:
    """Prefix map torchvision -> layered: stem to layer 1, block (stage s, index b) to its layer, fc to the head."""
    mapping = {"conv1.": "layers.0.stem.conv1.", "bn1.": "layers.0.stem.bn1.", "fc.": "classifier.fc."}
    index = 0
    for stage, n_blocks in enumerate(depths, start=1):
        for b in range(n_blocks):
            mapping[f"layer{stage}.{b}."] = "layers.0.block." if index == 0 else f"layers.{index}."
            index += 1
    return mapping


def from_torchvision_resnet(tv_model: nn.Module) -> LayeredNet:
    """A LayeredNet (ImageNet stem) holding exactly `tv_model`'s weights and buffers.

    `tv_model` is a torchvision ResNet-50/101/152 of any width multiplier and class count.
    """
    depths = tuple(len(getattr(tv_model, f"layer{s}", ())) for s in (1, 2, 3, 4))
    arch = next((name for name, d in DEPTHS.items() if d == depths), None)
    if arch is None:
        raise SedonaError(f"not a torchvision ResNet-50/101/152 (blocks per stage {depths})")
    cfg = ModelConfig(
        arch=arch,
        num_classes=tv_model.fc.out_features,
        stem="imagenet",
        width=tv_model.conv1.out_channels / 64,
        in_channels=tv_model.conv1.in_channels,
    )
    with torch.device("meta"):  # no initialisation: every tensor is replaced by torchvision's below
        net = build_model(cfg)
    mapping = torchvision_resnet_key_map(depths)
    state = {}
    for key, value in tv_model.state_dict().items():
        prefix = next((p for p in mapping if key.startswith(p)), None)
        if prefix is None:
            raise SedonaError(f"unexpected torchvision ResNet key {key!r}")
        state[mapping[prefix] + key[len(prefix):]] = value.detach().clone()
    net.load_state_dict(state, strict=True, assign=True)
    return net
