"""What flows through the pipeline: batches and markers down the blocks, reports up to the coordinator."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Batch:
    """Training step `step` (0-based): the input of the receiving block and the labels."""

    step: int
    x: torch.Tensor
    y: torch.Tensor


@dataclass
class Marker:
    """A control point that travels in order with the batches.

    'checkpoint': every block saves its state after `step` steps, then passes the marker on;
    'snapshot': every block sends its weights to the coordinator (for validation), then passes it on.
    """

    kind: str
    step: int


@dataclass
class Report:
    """From a block to the coordinator's inbox.

    kind: 'metrics' (data: BlockMetrics fields), 'saved' (checkpoint written for `step`),
    'snapshot' / 'final' (data: the block's state_dict on CPU), 'error' (data: message).
    """

    block: int          # 1-based
    kind: str
    step: int
    data: Any = None
    extra: dict = field(default_factory=dict)
