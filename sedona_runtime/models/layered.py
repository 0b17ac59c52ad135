"""LayeredNet: an ordered list of layers (every boundary a split point) followed by a final head."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from sedona_runtime.heads.base import Head


class LayeredNet(nn.Module):
    """L layers applied in order, then the network's own classifier (a Head).

    `channels[l]` is layer l's output channel count and `head_channels[l]` the Nc basis an
    auxiliary head attached after it uses (out channels // 4; a bottleneck block's inner width).
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        classifier: Head,
        channels: Sequence[int],
        head_channels: Sequence[int],
        arch: str = "",
    ) -> None:
        super().__init__()
        if not (len(layers) == len(channels) == len(head_channels)) or not layers:
            raise ValueError("layers, channels and head_channels must be non-empty and of equal length")
        self.layers = nn.ModuleList(layers)
        self.classifier = classifier
        self.arch = arch
        self._channels = [int(c) for c in channels]
        self._head_channels = [int(c) for c in head_channels]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def layer_channels(self, l: int) -> int:
        """Output channels of layer `l` (0-based)."""
        return self._channels[self._check(l)]

    def layer_head_channels(self, l: int) -> int:
        """Nc basis for an auxiliary head after layer `l` (0-based)."""
        return self._head_channels[self._check(l)]

    def features(self, x: Tensor, upto: int | None = None) -> Tensor:
        """Output of layer `upto` (0-based, inclusive; default: the last layer)."""
        last = self.num_layers - 1 if upto is None else self._check(upto)
        for layer in self.layers[: last + 1]:
            x = layer(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))

    def _check(self, l: int) -> int:
        if not 0 <= l < self.num_layers:
            raise IndexError(f"layer index {l} out of range for {self.num_layers} layers")
        return l


def layer_output_shapes(model: LayeredNet, input_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """(C, H, W) of every layer's output for one input of shape `input_shape` (C, H, W).

    Runs one sample through the layers in eval mode without gradients on the model's own device;
    a model built under `torch.device("meta")` costs nothing but shape propagation.
    """
    try:
        ref = next(model.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    was_training = model.training
    model.eval()  # batch statistics of one sample at 1x1 would be undefined in train mode
    shapes: list[tuple[int, int, int]] = []
    try:
        with torch.no_grad():
            x = torch.zeros((1, *input_shape), device=device, dtype=dtype)
            for layer in model.layers:
                x = layer(x)
                shapes.append((int(x.shape[1]), int(x.shape[2]), int(x.shape[3])))
    finally:
        model.train(was_training)
    return shapes
