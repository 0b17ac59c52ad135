"""A block's training step through torch.compile (`--compile`), or eager: the same functions of the same weights."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from sedona_runtime.training.losses import local_loss


def compiled_step(block: nn.Module, label_smoothing: float, compile: bool) -> tuple[Callable, Callable]:
    """(forward(x) -> features, loss(features, y) -> (loss, logits)) of `block`: eager, or each through
    torch.compile (inductor) when `compile`. The compiled callables share the block's parameters and
    state-dict keys; only `BlockRunner.train_step` uses them (evaluation, with its own shapes, stays eager).
    """
    def loss(feats: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return local_loss(block.head, feats, y, label_smoothing)

    if not compile:
        return block, loss
    return torch.compile(block.layers), torch.compile(loss)
