"""The one network builder: seed -> model -> heads -> blocks of a RunSpec, for every process that builds a run.

The single-process trainer, every pipeline block, the coordinator's meta build and `trained.load` (evaluate,
export) all call `build_network` with the run's spec, so they cannot drift apart (they did: the blocks resolved
`sedona:K --retarget` differently from the trainer). tests/pipeline/test_structure.py checks that no other
module builds a network from its parts and that the builder and the blocks never resolve a decoupling.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from sedona_runtime.utils.errors import SedonaError


@dataclass
class Network:
    """A run's network: the model, the decoupling it is cut by, and its blocks (sharing the model's modules)."""

    model: Any           # models.LayeredNet
    decoupling: Any      # decoupling.Decoupling
    blocks: list         # training.block.Block, one per block of the decoupling


def build_network(spec, *, meta: bool = False) -> Network:
    """The network of RunSpec `spec` (training.spec): what every process of a run builds.

    Seeds torch's CPU generator with `spec.train.seed`, builds the model, checks that the whole network (every
    layer and the classifier) runs on `spec.input_shape` and outputs (1, num_classes) logits, then builds the
    heads in block order and the blocks of `spec.decoupling`, the resolved Decoupling the spec holds: nothing
    here resolves a decoupling's spec string (`sedona:2`, `--retarget`), so a block on another machine builds
    exactly what the coordinator resolved. The shape check draws nothing from the generator, so every caller
    builds the same weights. `meta`: modules on the meta device (shapes only, no memory). Raises SedonaError
    for a network that does not fit the input or a decoupling that does not fit the model.
    """
    from sedona_runtime.heads import head_width_for
    from sedona_runtime.models import build_model
    from sedona_runtime.training.block import build_blocks, head_spec_fn

    cfg, dec, input_shape = spec.train, spec.decoupling, tuple(spec.input_shape)
    model_cfg = cfg.model

    def modules():
        return torch.device("meta") if meta else contextlib.nullcontext()

    torch.manual_seed(cfg.seed)
    with modules():
        model = build_model(model_cfg)
    check_network(cfg, input_shape, model)
    if dec.num_layers != model.num_layers:
        raise SedonaError(f"the run's decoupling has {dec.num_layers} layers, but the network {model_cfg.arch!r} "
                          f"has {model.num_layers}")
    with modules():
        spec_fn = head_spec_fn(model, input_shape, model_cfg.num_classes, head_width_for(model_cfg.stem))
        blocks = build_blocks(model, dec, spec_fn)
    return Network(model, dec, blocks)


def check_network(cfg, input_shape: tuple[int, int, int], model=None) -> None:
    """SedonaError unless the network of `cfg` maps one (C, H, W) input to (1, num_classes) logits.

    Checked on a meta-device copy (shapes only: no memory, no FLOPs, no draw from any generator), so a
    too-small input (VGG-19's five poolings on 16x16) is one line before any run directory exists,
    not a RuntimeError at the first step. `model`: an already built model of `cfg` (a meta one is reused).
    """
    from sedona_runtime.models import build_model, list_models
    from sedona_runtime.models.layered import check_output

    user = cfg.model.arch not in list_models()
    with torch.random.fork_rng(devices=[]):
        if model is None or not (user or _on_meta(model)):  # a user's net is checked as built (it may not
            with torch.device("meta"):                        # build on the meta device)
                model = build_model(cfg.model)
        try:
            check_output(model, tuple(input_shape), cfg.model.num_classes)
        except SedonaError as exc:
            if user:
                raise
            raise SedonaError(f"{exc} (input {input_shape[1]}x{input_shape[2]}: pass a larger --image-size, or "
                              "another --arch)") from None


def _on_meta(model: torch.nn.Module) -> bool:
    p = next(iter(model.parameters()), None)
    return p is not None and p.device.type == "meta"
