"""Tiny float64 relaxed networks shared by the search tests."""
from __future__ import annotations

import torch
from torch import nn

from sedona_runtime.search.relaxation import RelaxedNet

IN, HID, CLASSES = 4, 5, 3


def tiny_relaxed(num_layers: int = 4, pool: int = 2, seed: int = 0, bn: bool = False) -> RelaxedNet:
    """`num_layers` small dense layers (optionally with batch norm), a `pool`-sized head pool, float64."""
    torch.manual_seed(seed)
    layers = []
    for l in range(num_layers):
        mods = [nn.Linear(IN if l == 0 else HID, HID)]
        if bn:
            mods.append(nn.BatchNorm1d(HID))
        mods.append(nn.Tanh())
        layers.append(nn.Sequential(*mods))
    def head(m: int) -> nn.Module:
        if m % 2 == 0:
            return nn.Linear(HID, CLASSES)
        return nn.Sequential(nn.Linear(HID, 6), nn.Tanh(), nn.Linear(6, CLASSES))
    heads = [[head(m) for m in range(pool)] for _ in range(num_layers - 1)]
    return RelaxedNet(layers, nn.Linear(HID, CLASSES), heads, label_smoothing=0.1).double()


def tiny_batch(n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, IN, generator=g, dtype=torch.float64), torch.randint(0, CLASSES, (n,), generator=g)
