"""The coordinator's side of evaluation through the pipeline: counting the logits the blocks report.

An evaluation round is one pass over a split ("val" or "test") on the weights after some step. Every
block reports its own head's logits of every batch; once all K have arrived for a batch, the batch is
counted with training.evaluate.ErrorCounter, the very counter the single-process trainer uses, and the
round's EvalResult is ready when all its batches are counted. The coordinator holds logits and labels
only: no model, no weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sedona_runtime.training.evaluate import ErrorCounter, EvalResult


@dataclass
class _Round:
    count: int
    counter: ErrorCounter = field(default_factory=ErrorCounter)
    pending: dict[int, dict] = field(default_factory=dict)   # batch index -> {block: logits, "y": labels}
    counted: int = 0


class EvalRounds:
    """Rounds keyed by (split, step); `add` the blocks' reports, `pop_done` the finished results."""

    def __init__(self, blocks: int) -> None:
        self.K = blocks
        self._rounds: dict[tuple[str, int], _Round] = {}
        self._done: dict[tuple[str, int], EvalResult] = {}

    def add(self, block: int, step: int, data: dict) -> None:
        """Block `block`'s logits of batch data['index'] (of data['count']) of round (data['split'], step)."""
        key = (data["split"], step)
        rnd = self._rounds.setdefault(key, _Round(int(data["count"])))
        entry = rnd.pending.setdefault(int(data["index"]), {})
        entry[block] = data["logits"]
        if data.get("y") is not None:
            entry["y"] = data["y"]
        if all(i in entry for i in range(1, self.K + 1)) and "y" in entry:
            del rnd.pending[int(data["index"])]
            rnd.counter.add([entry[i].float() for i in range(1, self.K + 1)], torch.as_tensor(entry["y"]))
            rnd.counted += 1
            if rnd.counted == rnd.count:
                self._done[key] = rnd.counter.result()
                del self._rounds[key]

    def pop_done(self) -> list[tuple[str, int, EvalResult]]:
        """The rounds finished since the last call, in step order: (split, step, result)."""
        done = sorted(self._done.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        self._done.clear()
        return [(split, step, res) for (split, step), res in done]

    def busy(self) -> bool:
        """Whether a round has batches still to count."""
        return bool(self._rounds)
