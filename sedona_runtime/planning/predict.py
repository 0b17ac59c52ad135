"""The pipeline's predicted speedup: one-device backprop step time over the slowest block's step time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from sedona_runtime.planning.cost_model import CostModel
from sedona_runtime.utils.errors import SedonaError


def ideal_speedup(baseline_step: float, block_steps: Sequence[float]) -> float:
    """Speedup a K-stage pipeline allows: baseline step time / the slowest block's step time.

    In steady state a greedy pipeline finishes one batch per slowest-stage step (blocks never
    wait for gradients from later blocks), while one device running the whole network pays the
    baseline step. Shared by the planner's prediction and the benchmark's "ideal" figure, which
    feeds it measured times.
    """
    if not block_steps:
        raise SedonaError("ideal speedup needs at least one block")
    slowest = max(block_steps)
    if slowest <= 0:
        raise SedonaError("ideal speedup: block step times must be positive")
    return baseline_step / slowest


@dataclass(frozen=True)
class BlockPrediction:
    """Predicted step cost of one block and what it is made of."""

    first: int
    last: int
    head: str | None
    cost: float            # transfer_in + layers + head, as CostModel.block_cost sums it
    transfer_in: float
    layers: float
    head_cost: float


@dataclass(frozen=True)
class Prediction:
    """Predicted speedup of one decoupling under one cost model."""

    baseline: float
    blocks: tuple[BlockPrediction, ...]
    speedup: float
    unit: str

    @property
    def bottleneck(self) -> int:
        """0-based index of the slowest block."""
        costs = [b.cost for b in self.blocks]
        return costs.index(max(costs))

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "speedup": self.speedup, "unit": self.unit,
                "bottleneck_block": self.bottleneck + 1,
                "blocks": [b.__dict__ | {"share": b.cost / self.baseline} for b in self.blocks]}


def blocks_of(decoupling: Any) -> list[tuple[int, int, str | None]]:
    """(first, last, head) of each block of a Decoupling (or any object with .blocks of BlockSpec)."""
    return [(b.first, b.last, b.head) for b in decoupling.blocks]


def predict(cost_model: CostModel, blocks: Sequence[tuple[int, int, str | None]]) -> Prediction:
    """Per-block breakdown and predicted speedup of blocks (first, last, head) covering 1..L in order."""
    L = cost_model.num_layers
    expected = 1
    for first, last, _ in blocks:
        if first != expected or last < first:
            raise SedonaError(f"blocks must cover layers 1..{L} in order; block {first}..{last} "
                              f"should start at layer {expected}")
        expected = last + 1
    if expected != L + 1:
        raise SedonaError(f"blocks cover layers 1..{expected - 1}, the cost model has {L} layers")
    preds = []
    for i, (first, last, head) in enumerate(blocks):
        is_last = i == len(blocks) - 1
        if is_last and head is not None:
            # A K=1 "decoupling" or a last block that names a head still trains through the
            # network's classifier; the runtime ignores the name, so does the prediction.
            head = None
        if not is_last and head is None:
            raise SedonaError(f"block {i + 1} ({first}..{last}) has no head; only the last block may")
        transfer = cost_model.transfer_cost[first - 2] if first > 1 else 0.0
        layers = sum(cost_model.layer_cost[first - 1:last])
        hc = cost_model.classifier_cost if head is None else cost_model.head_at(head, last)
        preds.append(BlockPrediction(first, last, head, cost_model.block_cost(first, last, head),
                                     transfer, layers, hc))
    baseline = cost_model.baseline_cost()
    return Prediction(baseline, tuple(preds), ideal_speedup(baseline, [p.cost for p in preds]),
                      cost_model.unit)


def predicted_speedup(cost_model: CostModel, decoupling: Any) -> float:
    """Predicted K-device speedup of `decoupling` over one-device backprop (see ideal_speedup)."""
    return predict(cost_model, blocks_of(decoupling)).speedup
