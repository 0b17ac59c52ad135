"""Exact dynamic programme: the K-block cut of maximal alpha score whose every block meets a cost bound."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sedona_runtime.planning.cost_model import CostModel
from sedona_runtime.utils.errors import SedonaError


@dataclass(frozen=True)
class Cut:
    """One K-block cut: blocks end after the 1-based layers in `boundaries` (and after layer L)."""

    boundaries: tuple[int, ...]
    score: float                 # sum of the chosen boundaries' scores, added in boundary order
    max_cost: float              # the slowest block's step cost
    speedup: float               # baseline / max_cost
    block_costs: tuple[float, ...]


class CutProblem:
    """Everything the search needs, with block costs precomputed for every contiguous layer range.

    cost[i, j] is the step cost of a block of 0-based layers i..j with the head the problem
    assigns to boundary j (the classifier when j is the last layer); inf where i > j or that head
    has no cost there. scores[b] rewards cutting after 0-based layer b.
    """

    def __init__(self, cost: np.ndarray, scores: Sequence[float], K: int, baseline: float) -> None:
        L = cost.shape[0]
        if cost.shape != (L, L) or L < 1:
            raise SedonaError(f"cut problem: cost must be a square matrix, got shape {cost.shape}")
        if len(scores) != L - 1:
            raise SedonaError(f"cut problem: {len(scores)} boundary scores for {L} layers (need {L - 1})")
        if not isinstance(K, int) or not 1 <= K <= L:
            raise SedonaError(f"cannot cut {L} layers into K={K} blocks (K must be in 1..{L})")
        self.cost = np.asarray(cost, dtype=np.float64)
        self.scores = np.asarray(scores, dtype=np.float64)
        self.K, self.L, self.baseline = K, L, float(baseline)
        # bonus[j]: score earned by a block that ends after j layers (none for the last block).
        self._bonus = np.append(self.scores, 0.0)
        # cost_end[i, j] = cost of the block covering layers i..j-1, indexed by start i and end j.
        self._cost_end = np.full((L + 1, L + 1), np.inf)
        self._cost_end[:L, 1:] = self.cost

    @classmethod
    def from_cost_model(cls, cm: CostModel, scores: Sequence[float], heads: Sequence[str], K: int) -> "CutProblem":
        """Build from a cost model with heads[b] attached when cutting after 0-based layer b."""
        L = cm.num_layers
        if len(heads) != L - 1:
            raise SedonaError(f"{len(heads)} boundary heads for {L} layers (need {L - 1})")
        cost = np.full((L, L), np.inf)
        for j in range(L):
            head = None if j == L - 1 else heads[j]
            if head is not None and head not in cm.head_cost:
                cm.head_at(head, j + 1)  # raises the clear "no costs for head" error
            if head is not None and cm.head_cost[head][j] is None:
                continue  # this head cannot sit here: no block may end at j
            for i in range(j + 1):
                cost[i, j] = cm.block_cost(i + 1, j + 1, head)
        return cls(cost, scores, K, cm.baseline_cost())

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, boundaries: Sequence[int]) -> Cut:
        """The Cut for given 1-based boundaries (sorted, distinct, in 1..L-1)."""
        b = tuple(boundaries)
        if len(b) != self.K - 1 or list(b) != sorted(set(b)) or (b and not 1 <= b[0] <= b[-1] <= self.L - 1):
            raise SedonaError(f"boundaries {list(b)} are not {self.K - 1} distinct layers in 1..{self.L - 1}")
        score = 0.0
        for x in b:
            score += float(self.scores[x - 1])
        ends = list(b) + [self.L]
        starts = [0] + list(b)
        costs = tuple(float(self.cost[s, e - 1]) for s, e in zip(starts, ends))
        worst = max(costs)
        return Cut(b, score, worst, self.baseline / worst, costs)

    # ---- the dynamic programme -----------------------------------------------------------------
    def solve(self, allowed: np.ndarray) -> Cut | None:
        """Max-score cut using only blocks with allowed[i, j] (layers i..j); None if there is none.

        g[k][j] is the best score of k blocks covering the first j layers; a block covering
        layers i..j-1 adds bonus[j]. O(K L^2) with numpy, exact: every candidate score is formed
        by the same additions in boundary order as evaluate() forms it. Ties go to the
        lexicographically smallest boundaries (argmax returns the first maximum).
        """
        L, K = self.L, self.K
        ok = np.zeros((L + 1, L + 1), dtype=bool)
        ok[:L, 1:] = np.triu(allowed)
        g = np.full(L + 1, -np.inf)
        g[0] = 0.0
        back = np.zeros((K + 1, L + 1), dtype=np.int64)
        for k in range(1, K + 1):
            cand = np.where(ok, g[:, None], -np.inf)
            back[k] = np.argmax(cand, axis=0)
            best = cand[back[k], np.arange(L + 1)]
            g = best + self._bonus[np.arange(L + 1) - 1]
            g[0] = -np.inf
            if k < K:
                g[L] = -np.inf  # the last layer closes only the K-th block
        if not np.isfinite(g[L]):
            return None
        cuts, j = [], L
        for k in range(K, 0, -1):
            j = int(back[k][j])
            cuts.append(j)
        return self.evaluate(tuple(sorted(cuts[:-1])))

    def best_under(self, max_cost: float) -> Cut | None:
        """Max-score cut whose every block costs at most `max_cost`."""
        return self.solve(self.cost <= max_cost)

    def best_for_speedup(self, min_speedup: float) -> Cut | None:
        """Max-score cut with predicted speedup >= min_speedup; ties broken towards higher speedup.

        The bound is tested as baseline / cost >= min_speedup, the same division ideal_speedup
        does, so "feasible here" and "predicted speedup >= target" agree to the last bit.
        """
        with np.errstate(divide="ignore"):
            cut = self.solve(self.baseline / self.cost >= min_speedup)
        if cut is None:
            return None
        return self.tightest(cut.score, cut.max_cost)

    def thresholds(self) -> np.ndarray:
        """Sorted distinct finite block costs: the only values a cut's max block cost can take."""
        c = self.cost[np.isfinite(self.cost)]
        return np.unique(c)

    def tightest(self, score: float, upper: float, thresholds: np.ndarray | None = None) -> Cut:
        """Among cuts scoring >= `score` with max cost <= `upper`, one of minimal max cost.

        Binary search over the candidate thresholds (best score under a bound is monotone in it).
        """
        t = self.thresholds() if thresholds is None else thresholds
        lo, hi = 0, int(np.searchsorted(t, upper, side="right")) - 1
        found = None
        while lo <= hi:
            mid = (lo + hi) // 2
            cut = self.best_under(float(t[mid]))
            if cut is not None and cut.score >= score:
                found, hi = cut, mid - 1
            else:
                lo = mid + 1
        if found is None:
            raise SedonaError("internal: no cut reaches the score it was found with")
        return found


def max_speedup(problem: CutProblem) -> Cut | None:
    """The cut of highest predicted speedup (the most compute-balanced one), best score among ties."""
    t = problem.thresholds()
    if not len(t) or problem.best_under(float(t[-1])) is None:
        return None  # no K-block cut at all (heads unavailable at the boundaries it would need)
    # The minimal threshold admitting any cut; the best-scoring cut under it has exactly that max.
    lowest = problem.tightest(-np.inf, float(t[-1]), t)
    return problem.best_under(lowest.max_cost)
