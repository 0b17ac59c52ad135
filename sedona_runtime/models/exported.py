"""ExportedNet: a trained layered network as one ordinary nn.Module, optionally with its auxiliary heads."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from sedona_runtime.models.layered import LayeredNet


class ExportedNet(LayeredNet):
    """The layered network (layers, then its classifier: `forward(x)` -> logits (N, classes)) and,
    optionally, the auxiliary heads its blocks trained with (`aux_heads[j]` reads the output of 1-based
    layer `aux_after[j]`).

    `info` describes the input and the run it came from: "input_shape" (C, H, W), "mean"/"std" (per
    channel; trained.export always sets them, it refuses a run whose data cannot be read) and "scale" (255.0
    for images stored as uint8), "classes" (names or None), "num_classes", "arch", "run", "weights" ("best"
    or "last"), "step". `preprocess` applies the training normalization. Every export format holds one.
    """

    def __init__(self, net: LayeredNet, aux_heads: Sequence[nn.Module] = (), aux_after: Sequence[int] = (),
                 info: dict | None = None) -> None:
        super().__init__(list(net.layers), net.classifier, net._channels, net._head_channels, arch=net.arch)
        if len(aux_heads) != len(aux_after):
            raise ValueError("aux_heads and aux_after must have the same length")
        self.aux_heads = nn.ModuleList(aux_heads)
        self.aux_after = [int(a) for a in aux_after]
        self.info = dict(info or {})

    def preprocess(self, images: Tensor) -> Tensor:
        """Images (N, C, H, W) as the network saw them in training: divided by `info["scale"]`, then
        normalized with `info["mean"]`/`info["std"]` (each step skipped when unknown)."""
        x = images.to(torch.float32) / float(self.info.get("scale") or 1.0)
        mean, std = self.info.get("mean"), self.info.get("std")
        if mean is not None and std is not None:
            c = x.shape[1]
            shape = (1, c, 1, 1)
            x = (x - torch.tensor(mean, dtype=x.dtype).view(shape)) / torch.tensor(std, dtype=x.dtype).view(shape)
        return x.to(next(self.parameters()).dtype)

    def head_logits(self, x: Tensor) -> list[Tensor]:
        """Logits of every auxiliary head (in block order), then of the classifier."""
        out = []
        heads = dict(zip(self.aux_after, self.aux_heads))
        for l, layer in enumerate(self.layers, start=1):
            x = layer(x)
            if l in heads:
                out.append(heads[l](x))
        out.append(self.classifier(x))
        return out
