"""LayeredNet: an ordered list of layers (every boundary a split point) followed by a final head."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from sedona_runtime.heads.base import Head
from sedona_runtime.utils.errors import SedonaError


class LayeredNet(nn.Module):
    """L layers applied in order, then the network's own classifier (a Head).

    `channels[l]` is layer l's output channel count and `head_channels[l]` the Nc basis an
    auxiliary head attached after it uses (out channels // 4; a bottleneck block's inner width).
    Either may be omitted (or hold None entries) for a network wrapped from user code: a missing
    channel count is read from the layer's last convolution or batch norm (the previous layer's when
    it has neither), a missing Nc is None, which `HeadSpec` turns into in_channels // 4.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        classifier: Head,
        channels: Sequence[int | None] | None = None,
        head_channels: Sequence[int | None] | None = None,
        arch: str = "",
    ) -> None:
        super().__init__()
        channels = [None] * len(layers) if channels is None else list(channels)
        head_channels = [None] * len(layers) if head_channels is None else list(head_channels)
        if not (len(layers) == len(channels) == len(head_channels)) or not layers:
            raise ValueError("layers, channels and head_channels must be non-empty and of equal length")
        self.layers = nn.ModuleList(layers)
        self.classifier = classifier
        self.arch = arch
        known: list[int | None] = []
        for layer, c in zip(layers, channels):
            c = c if c is not None else _static_out_channels(layer)
            known.append(int(c) if c is not None else (known[-1] if known else None))
        self._channels = known
        self._head_channels = [int(c) if c is not None else None for c in head_channels]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def layer_channels(self, l: int) -> int:
        """Output channels of layer `l` (0-based); `layer_output_shapes` is authoritative for wrapped
        user networks (SedonaError when a layer's channels cannot be read without running it)."""
        c = self._channels[self._check(l)]
        if c is None:
            raise SedonaError(f"{self.arch or 'network'}: the output channels of layer {l + 1} are not known "
                              "without an input; use layer_output_shapes")
        return c

    def layer_head_channels(self, l: int) -> int | None:
        """Nc basis for an auxiliary head after layer `l` (0-based); None: the head's default
        (in_channels // 4, see HeadSpec.resolved_nc)."""
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


@contextmanager
def _probe(model: LayeredNet) -> Iterator[tuple[torch.device, torch.dtype]]:
    """(device, dtype) to run one probe sample on, with `model` in eval mode and no gradients; its mode is
    restored afterwards. Eval mode: batch statistics of one sample at 1x1 would be undefined in train mode."""
    try:
        ref = next(model.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield device, dtype
    finally:
        model.train(was_training)


def layer_output_shapes(model: LayeredNet, input_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """(C, H, W) of every layer's output for one input of shape `input_shape` (C, H, W).

    Runs one sample through the layers in eval mode without gradients on the model's own device;
    a model built under `torch.device("meta")` costs nothing but shape propagation. Raises SedonaError
    naming the layer when one fails on its input or does not output a (N, C, H, W) map.
    """
    shapes: list[tuple[int, int, int]] = []
    name = model.arch or "network"
    with _probe(model) as (device, dtype):
        x = torch.zeros((1, *input_shape), device=device, dtype=dtype)
        for l, layer in enumerate(model.layers, start=1):
            try:
                x = layer(x)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise SedonaError(f"{name}: layer {l} ({type(layer).__name__}) fails on "
                                  f"{'the input' if l == 1 else f'the output of layer {l - 1}'} (input shape "
                                  f"{tuple(input_shape)}): {_first_line(exc)}") from None
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise SedonaError(f"{name}: layer {l} ({type(layer).__name__}) outputs {got}, but every layer "
                                  "before the classifier must output a (N, C, H, W) feature map (auxiliary heads "
                                  "attach there); put the flattening modules into the classifier")
            shapes.append((int(x.shape[1]), int(x.shape[2]), int(x.shape[3])))
    return shapes


def check_output(model: LayeredNet, input_shape: tuple[int, int, int], num_classes: int) -> None:
    """SedonaError unless `model` maps one input of shape (C, H, W) to logits of shape (1, num_classes).

    Catches a user network that ignores `num_classes` or does not fit the data's images, before training.
    """
    shapes = layer_output_shapes(model, input_shape)
    name = model.arch or "network"
    with _probe(model) as (device, dtype):
        try:
            out = model.classifier(torch.zeros((1, *shapes[-1]), device=device, dtype=dtype))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise SedonaError(f"{name}: the classifier fails on the last layer's output {shapes[-1]}: "
                              f"{_first_line(exc)}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SedonaError(f"{name}: outputs {got} for one input of shape {tuple(input_shape)}, "
                          f"expected logits of shape (1, {num_classes}) (does it use num_classes?)")


def _static_out_channels(layer: nn.Module) -> int | None:
    """Output channels of `layer` read from its parameters: its last 2-D convolution or batch norm."""
    found = None
    for m in layer.modules():
        if isinstance(m, nn.Conv2d):
            found = m.out_channels
        elif isinstance(m, nn.BatchNorm2d):
            found = m.num_features
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
