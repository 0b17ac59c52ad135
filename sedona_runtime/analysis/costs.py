"""Per-layer and per-head parameter and FLOP counts; FLOPs are multiply-adds (MACs) of convs and FCs.

Counting convention (the one behind torchvision's "4.09 GFLOPS" for ResNet-50): one multiply-add per
weight use in every Conv2d and Linear, read from the shapes each module sees in a forward pass.
Bias adds, batch norm, activations, pooling, residual adds and matmuls outside modules (PredSim's
B x B similarity matrix, which grows with the batch) are not counted. Everything is evaluated on
the meta device, so even ResNet-152 at 224x224 with every head costs only shape propagation.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from sedona_runtime.heads.base import HeadSpec
from sedona_runtime.heads.registry import build_head, head_width_for, list_heads
from sedona_runtime.models.layered import LayeredNet
from sedona_runtime.models.registry import ModelConfig, build_model, validate_model_config
from sedona_runtime.utils.errors import SedonaError

_BATCH = 2  # two samples so that batch norm in training mode is defined; counts are per sample


def param_count(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of `module`."""
    return sum(p.numel() for p in module.parameters())


def _conv_macs(m: nn.Conv2d, out: Tensor) -> int:
    kh, kw = m.kernel_size
    return out.numel() * (m.in_channels // m.groups) * kh * kw


def _linear_macs(m: nn.Linear, out: Tensor) -> int:
    return out.numel() * m.in_features


class MacCounter:
    """Accumulates multiply-adds of every Conv2d/Linear inside a module while it is attached."""

    def __init__(self) -> None:
        self.total = 0

    def _hook(self, module: nn.Module, inputs: tuple, out: Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            self.total += _conv_macs(module, out)
        elif isinstance(module, nn.Linear):
            self.total += _linear_macs(module, out)

    @contextmanager
    def attached(self, module: nn.Module) -> Iterator["MacCounter"]:
        handles = [m.register_forward_hook(self._hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


def head_costs(name: str, spec: HeadSpec) -> dict[str, int]:
    """{"params", "flops"} of head `name` attached to a layer output described by `spec`.

    FLOPs are per sample and follow the head's training path (`local_loss`), so PredSim's
    similarity conv is included.
    """
    params, flops = _head_costs(name, spec.in_channels, spec.in_size, spec.num_classes, spec.width, spec.resolved_nc,
                                spec.pred_features)
    return {"params": params, "flops": flops}


@lru_cache(maxsize=4096)  # deep ResNets repeat the same (channels, size) many times
def _head_costs(name: str, in_channels: int, in_size: int, num_classes: int, width: int, nc: int,
                pred_features: int | None) -> tuple[int, int]:
    spec = HeadSpec(in_channels, in_size, num_classes, width=width, nc=nc, pred_features=pred_features)
    with torch.device("meta"):
        head = build_head(name, spec)
        x = torch.zeros(_BATCH, spec.in_channels, spec.in_size, spec.in_size)
        y = torch.zeros(_BATCH, dtype=torch.long)
    head.eval()  # eval-mode batch norm is far cheaper to shape-propagate on meta; counts are the same
    counter = MacCounter()
    with counter.attached(head), torch.no_grad():
        head.local_loss(x, y, 0.0)
    return param_count(head), counter.total // _BATCH


def network_costs(
    model: LayeredNet,
    input_shape: tuple[int, int, int],
    num_classes: int,
    head_width: int,
    heads: Sequence[str] | None = None,
) -> dict:
    """Costs of an already built `model`, from one forward pass of a single zero input on the
    model's own device (cheapest when the model was built under `torch.device("meta")`)."""
    heads = list_heads() if heads is None else list(heads)
    ref = next(model.parameters())
    was_training = model.training
    model.eval()
    layers = []
    try:
        with torch.no_grad():
            x = torch.zeros((1, *input_shape), device=ref.device, dtype=ref.dtype)
            for index, layer in enumerate(model.layers, start=1):
                counter = MacCounter()
                with counter.attached(layer):
                    x = layer(x)
                c, h = int(x.shape[1]), int(x.shape[2])
                spec = HeadSpec(c, h, num_classes, width=head_width, nc=model.layer_head_channels(index - 1))
                layers.append(
                    {
                        "index": index,
                        "channels": c,
                        "size": h,
                        "params": param_count(layer),
                        "flops": counter.total,
                        "heads": {name: head_costs(name, spec) for name in heads},
                    }
                )
            counter = MacCounter()
            with counter.attached(model.classifier):
                model.classifier(x)
    finally:
        model.train(was_training)
    classifier = {"params": param_count(model.classifier), "flops": counter.total}
    return {
        "arch": model.arch,
        "params": sum(l["params"] for l in layers) + classifier["params"],
        "flops": sum(l["flops"] for l in layers) + classifier["flops"],
        "layers": layers,
        "classifier": classifier,
    }


def model_costs(cfg: ModelConfig, input_shape: tuple[int, int, int], heads: Sequence[str] | None = None) -> dict:
    """Costs of the network `cfg` for one input of shape (C, H, W):

    {"arch", "params", "flops", "layers": [{"index" (1-based), "channels", "size", "params", "flops",
    "heads": {name: {"params", "flops"}}}], "classifier": {"params", "flops"}}; FLOPs are per-sample
    multiply-adds. `heads` defaults to every registered head, sized with the stem's head width.
    """
    validate_model_config(cfg)
    if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
        raise SedonaError(f"input shape must be (C, H, W) of positive sizes, got {tuple(input_shape)}")
    if input_shape[0] != cfg.in_channels:
        raise SedonaError(f"input shape has {input_shape[0]} channels but the model expects {cfg.in_channels}")
    with torch.device("meta"):
        model = build_model(cfg)
    try:
        return network_costs(model, tuple(input_shape), cfg.num_classes, head_width_for(cfg.stem), heads)
    except RuntimeError as exc:  # e.g. an input too small for the stem and its poolings
        raise SedonaError(f"{cfg.arch}: input shape {tuple(input_shape)} is too small for this network ({exc})") from exc
