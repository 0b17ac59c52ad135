"""Shared helpers for the planning tests: small hand-made and random cost models."""
from __future__ import annotations

import random

from sedona_runtime.planning.cost_model import CostModel

HEADS = ("aux1", "aux2")


def make_random_cost_model(seed: int, L: int, *, integer: bool = True, transfer: bool = True,
                           holes: bool = False) -> CostModel:
    """Random costs; integer-valued ones create the exact ties a front must handle."""
    rng = random.Random(seed)
    draw = (lambda a, b: float(rng.randint(a, b))) if integer else (lambda a, b: rng.uniform(a, b))
    heads = {}
    for h in HEADS:
        row = [draw(0, 4) for _ in range(L - 1)]
        if holes:
            row = [None if rng.random() < 0.2 else c for c in row]
        heads[h] = row
    return CostModel(
        arch="toy", num_layers=L, unit="macs",
        layer_cost=[draw(1, 9) for _ in range(L)], head_cost=heads, classifier_cost=draw(0, 3),
        transfer_cost=[draw(0, 2) for _ in range(L - 1)] if transfer else [],
    )


def random_scores(seed: int, n: int) -> list[float]:
    """Boundary scores with ties (quarters) like softmax(alpha)[0] values that saturate at 0, 0.5, 1."""
    rng = random.Random(seed + 10_000)
    return [rng.choice([0.0, 0.25, 0.5, 0.5, 0.75, 1.0, rng.random()]) for _ in range(n)]
