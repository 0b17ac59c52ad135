"""Plan a decoupling for accuracy (alpha score) and speed (predicted speedup) from a searched one."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from sedona_runtime.decoupling.baselines import uniform_boundaries
from sedona_runtime.decoupling.discretize import blocks_from_boundaries, boundary_head, boundary_scores
from sedona_runtime.decoupling.schema import Decoupling, validate
from sedona_runtime.planning.cost_model import CostModel
from sedona_runtime.planning.dp import Cut, CutProblem, max_speedup
from sedona_runtime.planning.pareto import pareto_front
from sedona_runtime.planning.predict import Prediction, blocks_of, predict
from sedona_runtime.utils.errors import SedonaError


def alpha_score(scores: Sequence[float], boundaries: Sequence[int]) -> float:
    """Sum of the boundary scores (softmax(alpha)[local], see decoupling.discretize.boundary_scores) of
    1-based `boundaries`, added in ascending order like the DP does.

    This is exactly the quantity SEDONA's discretisation maximises when it takes the top K-1 boundaries.
    """
    total = 0.0
    for b in sorted(boundaries):
        total += scores[b - 1]
    return total


def boundary_heads(dec: Decoupling, head: str | None = None) -> list[str]:
    """The head each boundary gets: `head` everywhere if given, else discretize's (the ranking's head where
    it lists the boundary, as the shipped files' paper tables do, argmax beta over head_pool elsewhere), else
    (a decoupling that was not searched, such as dgl:K) the one head all its blocks use."""
    n = dec.num_layers - 1
    if head is not None:
        return [head] * n
    if dec.beta is not None and dec.head_pool is not None:
        return [boundary_head(i, dec.beta, dec.head_pool, dec.ranking) for i in range(n)]
    own = sorted(set(dec.heads))
    if len(own) == 1:
        return own * n
    raise SedonaError(f"{dec.origin or dec.arch}: no beta/head_pool to choose heads from and its blocks use "
                      f"{'no head' if not own else 'heads ' + ', '.join(own)}; name one head for every block")


@dataclass
class Plan:
    """The result of planning: the front, the chosen cut, and the reference decouplings' figures."""

    cost_model: CostModel
    K: int
    scores: list[float]
    heads: list[str]
    front: list[Cut]
    chosen: Cut | None
    min_speedup: float | None
    fastest: Cut
    input_prediction: Prediction
    input_score: float | None
    uniform: Cut | None    # the uniform split with the same heads; None if a head is unavailable there
    has_alpha: bool

    def heads_of(self, cut: Cut) -> list[str]:
        return [self.heads[b - 1] for b in cut.boundaries]

    def cut_record(self, cut: Cut) -> dict[str, Any]:
        return {"boundaries": list(cut.boundaries), "heads": self.heads_of(cut), "alpha_score": cut.score,
                "predicted_speedup": cut.speedup, "block_costs": list(cut.block_costs)}

    def to_dict(self) -> dict[str, Any]:
        """Everything the plan found, as JSON (the sidecar file)."""
        return {
            "K": self.K, "min_speedup": self.min_speedup, "has_alpha": self.has_alpha,
            "chosen": None if self.chosen is None else self.cut_record(self.chosen),
            "max_predicted_speedup": self.fastest.speedup,
            "input": {"alpha_score": self.input_score, **self.input_prediction.to_dict()},
            "uniform": None if self.uniform is None else self.cut_record(self.uniform),
            "front": [self.cut_record(c) for c in self.front],
            "boundary_scores": self.scores, "boundary_heads": self.heads,
            "cost_model": self.cost_model.to_dict(),
        }


def make_plan(dec: Decoupling, cost_model: CostModel, K: int | None = None, min_speedup: float | None = None,
              head: str | None = None) -> Plan:
    """Plan K blocks for `dec`'s network: the exact front and, with `min_speedup`, the best cut reaching it.

    Without alpha every boundary scores 0, so the front is the single fastest (most balanced) cut.
    The chosen cut is None when no K-block cut reaches `min_speedup` (see Plan.fastest).
    """
    L = dec.num_layers
    if cost_model.num_layers != L:
        raise SedonaError(f"cost model has {cost_model.num_layers} layers, decoupling {dec.origin or dec.arch} has {L}")
    if cost_model.arch and cost_model.arch != dec.arch:
        raise SedonaError(f"cost model is for {cost_model.arch!r}, decoupling for {dec.arch!r}")
    K = dec.K if K is None else K
    if min_speedup is not None and not (math.isfinite(min_speedup) and min_speedup > 0):
        raise SedonaError(f"minimum speedup must be a positive number, got {min_speedup}")
    scores = boundary_scores(dec.alpha) if dec.alpha is not None else [0.0] * (L - 1)
    heads = boundary_heads(dec, head)
    problem = CutProblem.from_cost_model(cost_model, scores, heads, K)
    front = pareto_front(problem)
    if not front:
        raise SedonaError(f"no {K}-block cut is possible: the cost model lacks the chosen heads at the boundaries")
    chosen = front[0] if min_speedup is None else problem.best_for_speedup(min_speedup)
    uniform = problem.evaluate(uniform_boundaries(L, K))
    fastest = max_speedup(problem)
    assert fastest is not None  # the front is not empty, so some cut exists
    return Plan(
        cost_model=cost_model, K=K, scores=scores, heads=heads, front=front, chosen=chosen,
        min_speedup=min_speedup, fastest=fastest,
        input_prediction=predict(cost_model, blocks_of(dec)),
        input_score=alpha_score(scores, dec.boundaries) if dec.alpha is not None else None,
        uniform=uniform if math.isfinite(uniform.max_cost) else None, has_alpha=dec.alpha is not None,
    )


def planned_decoupling(dec: Decoupling, plan: Plan, cut: Cut, *, note: str = "") -> Decoupling:
    """`dec` re-cut at `cut` (alpha/beta/head_pool/ranking kept), its plan summarised in `source`."""
    heads = plan.heads_of(cut)
    target = "" if plan.min_speedup is None else f" for predicted speedup >= {plan.min_speedup:g}"
    score = f"alpha score {cut.score:.6f}" if plan.has_alpha else "no alpha (fastest cut)"
    out = Decoupling(
        arch=dec.arch, num_layers=dec.num_layers,
        blocks=blocks_from_boundaries(list(cut.boundaries), heads, dec.num_layers),
        alpha=dec.alpha, beta=dec.beta, head_pool=dec.head_pool, ranking=dec.ranking,
        source=(f"planned from {dec.origin or dec.arch} ({dec.source or 'no source'}): K={plan.K}{target}; "
                f"predicted speedup {cut.speedup:.3f}x, {score}; cost model: {plan.cost_model.source}"
                + (f"; {note}" if note else "")),
    )
    validate(out)
    return out
