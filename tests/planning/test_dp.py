"""The dynamic programme and the Pareto front against brute force over every K-block cut."""
from __future__ import annotations

import itertools
import random
import time

import numpy as np
import pytest

from sedona_runtime.planning.dp import Cut, CutProblem, max_speedup
from sedona_runtime.planning.pareto import pareto_front
from sedona_runtime.planning.predict import predict
from sedona_runtime.utils.errors import SedonaError

from planning_helpers import HEADS, make_random_cost_model, random_scores


def _problem(seed: int, L: int, K: int, **kw) -> CutProblem:
    cm = make_random_cost_model(seed, L, **kw)
    rng = random.Random(seed)
    heads = [rng.choice(HEADS) for _ in range(L - 1)]
    return CutProblem.from_cost_model(cm, random_scores(seed, L - 1), heads, K)


def _all_cuts(p: CutProblem) -> list[Cut]:
    cuts = [p.evaluate(b) for b in itertools.combinations(range(1, p.L), p.K - 1)]
    return [c for c in cuts if np.isfinite(c.max_cost)]


def _brute_front(cuts: list[Cut]) -> list[tuple[float, float]]:
    pairs = {(c.score, c.max_cost) for c in cuts}
    front = [(s, m) for s, m in pairs
             if not any(s2 >= s and m2 <= m and (s2, m2) != (s, m) for s2, m2 in pairs)]
    return sorted(front, key=lambda x: -x[0])


# Shapes from the trivial (K = 1, K = L) to every interior K; each runs over SEEDS random networks,
# integer-valued ones (exact ties in costs and scores) alternating with continuous ones, and every
# third with heads missing at some boundaries.
SHAPES = [(2, 2), (5, 1), (5, 3), (7, 2), (8, 4), (9, 5), (9, 9)]
SEEDS = range(30)


def _problems(L: int, K: int):
    for seed in SEEDS:
        yield _problem(seed, L, K, holes=seed % 3 == 0, integer=seed % 2 == 0)


@pytest.mark.parametrize("L,K", SHAPES)
def test_best_for_speedup_equals_brute_force(L: int, K: int) -> None:
    for p in _problems(L, K):
        _check_best_for_speedup(p)


def _check_best_for_speedup(p: CutProblem) -> None:
    cuts = _all_cuts(p)
    speedups = sorted({c.speedup for c in cuts})
    # Targets: every achievable speedup exactly (the boundary case), between them, and beyond.
    targets = speedups + [0.5, speedups[-1] * 1.0001 if speedups else 1.0, 1e9] + \
        [(a + b) / 2 for a, b in zip(speedups, speedups[1:])]
    for target in targets:
        got = p.best_for_speedup(target)
        feasible = [c for c in cuts if c.speedup >= target]
        if not feasible:
            assert got is None, (target, got)
            continue
        best_score = max(c.score for c in feasible)
        best_speed = max(c.speedup for c in feasible if c.score == best_score)
        assert got is not None and (got.score, got.speedup) == (best_score, best_speed), target
        assert got == p.evaluate(got.boundaries)  # the reported cut really has those figures


@pytest.mark.parametrize("L,K", SHAPES)
def test_pareto_front_equals_brute_force(L: int, K: int) -> None:
    for p in _problems(L, K):
        _check_front(p)


def _check_front(p: CutProblem) -> None:
    cuts = _all_cuts(p)
    front = pareto_front(p)
    assert [(c.score, c.max_cost) for c in front] == _brute_front(cuts)
    for c in front:
        assert c == p.evaluate(c.boundaries)
    if cuts:
        fastest = max_speedup(p)
        assert fastest.speedup == max(c.speedup for c in cuts)
        assert fastest.score == max(c.score for c in cuts if c.speedup == fastest.speedup)
        assert front[-1] == fastest


def test_dp_costs_match_the_prediction_model() -> None:
    """The programme's block costs are the prediction's block costs, bit for bit."""
    cm = make_random_cost_model(3, 9, integer=False)
    heads = ["aux2"] * 8
    p = CutProblem.from_cost_model(cm, [0.1] * 8, heads, 3)
    for b in itertools.combinations(range(1, 9), 2):
        cut = p.evaluate(b)
        ends = list(b) + [9]
        starts = [1] + [x + 1 for x in b]
        pred = predict(cm, [(s, e, "aux2" if e < 9 else None) for s, e in zip(starts, ends)])
        assert cut.block_costs == tuple(x.cost for x in pred.blocks)
        assert cut.speedup == pred.speedup


def test_bad_problems_are_clear_errors() -> None:
    cm = make_random_cost_model(0, 4)
    with pytest.raises(SedonaError, match="K=5"):
        CutProblem.from_cost_model(cm, [0.0] * 3, ["aux1"] * 3, 5)
    with pytest.raises(SedonaError, match="boundary heads"):
        CutProblem.from_cost_model(cm, [0.0] * 3, ["aux1"] * 2, 2)
    with pytest.raises(SedonaError, match="no costs for head"):
        CutProblem.from_cost_model(cm, [0.0] * 3, ["nope"] * 3, 2)


def test_resnet152_sized_front_is_fast() -> None:
    """50 layers, K = 4..16: the whole front in well under a few seconds (the brief's bound)."""
    cm = make_random_cost_model(7, 50, integer=False)
    scores = random_scores(7, 49)
    start = time.perf_counter()
    for K in (4, 8, 16):
        p = CutProblem.from_cost_model(cm, scores, ["aux1"] * 49, K)
        front = pareto_front(p)
        assert front and all(a.score > b.score and a.speedup < b.speedup for a, b in zip(front, front[1:]))
    assert time.perf_counter() - start < 6.0  # generous for a loaded 2-core machine; ~0.5 s idle
