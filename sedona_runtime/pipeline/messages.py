"""The pipeline's message vocabulary: what flows down the blocks (Batch, EvalBatch, Marker, END, Failure) and
what goes up to the coordinator (Report). Every module names them from here."""
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
    """From a block process to the coordinator's inbox.

    kind: 'ready' (built and resumed), 'metrics' (data: BlockStats fields), 'saved' (checkpoint written for
    `step`), 'candidate' (best-weights candidate written for `step`), 'logits' (data: {split, index, count,
    logits, y}: the block's head logits of one evaluation batch; y from the last block), 'final' (data:
    None; extra may hold the timeline). `block` and `replica` say who reports, as numbers: nothing reads
    them back out of a process name.
    """

    block: int          # 1-based
    kind: str
    step: int
    data: Any = None
    extra: dict = field(default_factory=dict)
    replica: int = 0    # 0-based; replica 0 is the one that writes, evaluates and reports metrics

    @property
    def who(self) -> int | tuple[int, int]:
        """The reporting process: the block number for replica 0, (block, replica) for the others."""
        return (self.block, self.replica) if self.replica else self.block


class _End:
    """End of stream: the sender closed the channel (unpickles to the one module-level instance)."""

    def __reduce__(self) -> str:
        return "END"

    def __repr__(self) -> str:
        return "END"


END = _End()


class Failure:
    """An upstream process's error, sent down a channel (or to the inbox) in place of an item: the
    receiver's get raises channel.PeerError(origin, message, channel).

    `origin`: who failed, as messages name it ("block2", "block1 replica 1"); `channel`: the failure is a
    transport error (usually the symptom of a peer's death, so the coordinator ranks it below the cause).
    """

    def __init__(self, origin: str, message: str, channel: bool = False) -> None:
        self.origin, self.message, self.channel = origin, message, bool(channel)

    def __repr__(self) -> str:
        return f"Failure({self.origin!r}, {self.message!r}, channel={self.channel})"
