"""What flows through the pipeline: batches and markers down the blocks, reports up to the coordinator."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Batch:
    """Training step `step` (0-based): the input of the receiving block and the labels.

    From the coordinator to block 1 the batch is raw (`raw`: images as stored, e.g. uint8, and the
    augmentation's `draws`): block 1 preprocesses it on its own device (data.Preprocess).
    """

    step: int
    x: torch.Tensor
    y: torch.Tensor
    draws: dict | None = None
    raw: bool = False


@dataclass
class EvalBatch:
    """Batch `index` of `count` of an evaluation of `split` ("val" or "test") on the weights after `step`
    steps. Travels in order with the training batches, so every block evaluates exactly those weights;
    each block reports its head's logits and passes its features on (raw from the coordinator)."""

    split: str
    step: int
    index: int
    count: int
    x: torch.Tensor
    y: torch.Tensor
    raw: bool = False


@dataclass
class Marker:
    """A control point that travels in order with the batches.

    'checkpoint': every block saves its state after `step` steps, then passes the marker on;
    'validate': a validation of the weights after `step` steps follows: every block saves its weights
    as that step's best-weights candidate (the coordinator keeps the best), then passes it on.
    """

    kind: str
    step: int


@dataclass
class Report:
    """From a block to the coordinator's inbox.

    kind: 'metrics' (data: BlockStats fields), 'saved' (checkpoint written for `step`), 'candidate'
    (best-weights candidate written for `step`), 'logits' (data: {split, index, count, logits, y}: the
    block's head logits of one evaluation batch; y from the last block), 'final' (data: None; extra may
    hold the timeline), 'error' (data: message).
    """

    block: int          # 1-based
    kind: str
    step: int
    data: Any = None
    extra: dict = field(default_factory=dict)
