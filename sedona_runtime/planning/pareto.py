"""The exact Pareto front of alpha score against predicted speedup over all K-block cuts."""
from __future__ import annotations

from sedona_runtime.planning.dp import Cut, CutProblem


def pareto_front(problem: CutProblem) -> list[Cut]:
    """Every non-dominated (score, speedup) pair, one cut each, by decreasing score / increasing speedup.

    best(T), the max score over cuts whose blocks all cost <= T, is a non-decreasing step
    function of T that changes only at block costs. Starting from the loosest bound, take the
    best score S there, binary-search the smallest threshold still reaching S (that cut's max
    block cost is exactly it: no cut of score >= S is faster), emit it, and continue strictly
    below that threshold. Each front point costs O(log L^2) runs of the O(K L^2) programme.
    """
    t = problem.thresholds()
    front: list[Cut] = []
    upper = float(t[-1]) if len(t) else None
    while upper is not None:
        best = problem.best_under(upper)
        if best is None:
            break
        point = problem.tightest(best.score, upper, t)
        front.append(point)
        below = t[t < point.max_cost]
        upper = float(below[-1]) if len(below) else None
    return front
