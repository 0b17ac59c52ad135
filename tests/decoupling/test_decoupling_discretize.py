"""discretize: the released rule (top K-1 boundaries by softmax(alpha)[0], argmax-beta heads), ties, bounds."""
from __future__ import annotations

import math

import pytest
import torch

from sedona_runtime.decoupling import discretize, rank_boundaries, rediscretize, uniform_decoupling
from sedona_runtime.decoupling.discretize import best_head, boundary_scores
from sedona_runtime.utils.errors import SedonaError

POOL = ["aux1", "aux2", "aux3", "aux4"]


def _alpha(local_minus_backprop):
    return [[d / 2, -d / 2] for d in local_minus_backprop]


def test_scores_are_softmax_of_local_logit():
    alpha = [[1.0, -2.0], [0.5, 0.5], [-3.0, 4.0]]
    expect = [1 / (1 + math.exp(b - a)) for a, b in alpha]
    assert boundary_scores(alpha) == pytest.approx(expect, rel=1e-12)


def test_top_boundaries_become_cuts_after_layer_index_plus_one():
    # 6 layers -> 5 boundaries; alpha index i is the cut after 1-based layer i+1.
    alpha = _alpha([-3.0, 2.0, -1.0, 5.0, 0.0])
    beta = [[0, 0, 0, 1], [0, 9, 0, 0], [1, 0, 0, 0], [0, 0, 2, 0], [3, 0, 0, 0]]
    assert rank_boundaries(alpha) == [3, 1, 4, 2, 0]
    dec = discretize(alpha, beta, 3, POOL, "small", 6)
    assert dec.boundaries == [2, 4]  # boundary indices 1 and 3
    assert dec.heads == ["aux2", "aux3"]  # argmax of beta[1] and beta[3]
    assert [(b.first, b.last) for b in dec.blocks] == [(1, 2), (3, 4), (5, 6)]
    assert dec.alpha == alpha and dec.beta == [[float(v) for v in r] for r in beta] and dec.head_pool == POOL


def test_exact_ties_go_to_the_earlier_boundary_and_first_head():
    # Signed zeros as in the released file: -0.0 == 0.0, so these are exact ties.
    alpha = [[0.0, -0.0], [-0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]
    assert rank_boundaries(alpha) == [3, 0, 1, 2]
    assert best_head([-0.0, 0.0, 0.0, -0.0], POOL) == "aux1"
    assert best_head([0.0, 2.0, 2.0, 1.0], POOL) == "aux2"
    dec = discretize(alpha, [[0.0] * 4] * 4, 3, POOL, "small", 5)
    assert dec.boundaries == [1, 4] and dec.heads == ["aux1", "aux1"]


def test_cuts_are_nested_in_K_and_tensor_input_matches_lists():
    gen = torch.Generator().manual_seed(3)
    alpha, beta = torch.randn(11, 2, generator=gen), torch.randn(11, 4, generator=gen)
    previous: set[int] = set()
    for k in range(1, 13):
        dec = discretize(alpha, beta, k, POOL, "small", 12)
        assert dec.K == k and set(dec.boundaries) >= previous
        previous = set(dec.boundaries)
        assert dec == discretize(alpha.tolist(), beta.tolist(), k, POOL, "small", 12)
    assert previous == set(range(1, 12))  # K = L: every layer its own block


def test_rediscretize_recovers_other_K():
    alpha, beta = _alpha([1.0, -1.0, 2.0]), [[1, 0, 0, 0]] * 3
    dec4 = discretize(alpha, beta, 4, POOL, "small", 4, source="s")
    assert rediscretize(dec4, 2) == discretize(alpha, beta, 2, POOL, "small", 4, source="s")
    with pytest.raises(SedonaError, match="carries no alpha/beta"):
        rediscretize(uniform_decoupling("small", 4, 2, "aux1"), 3)


def test_ranking_decides_first_then_scores_with_ties_to_the_earlier_boundary():
    # Boundary 4 (0-based 3) has the best score, but the ranking puts layers 2 and 5 first, with its heads.
    alpha = _alpha([0.0, 1.0, 0.0, 5.0, 0.0, 0.0])
    beta = [[0, 0, 0, 1]] * 6
    ranking = [[2, "aux2"], [5, "aux3"]]
    assert rank_boundaries(alpha, ranking) == [1, 4, 3, 0, 2, 5]
    dec = discretize(alpha, beta, 3, POOL, "small", 7, ranking=ranking)
    assert dec.boundaries == [2, 5] and dec.heads == ["aux2", "aux3"] and dec.ranking == ranking
    dec5 = rediscretize(dec, 5)
    assert dec5.boundaries == [1, 2, 4, 5] and dec5.heads == ["aux4", "aux2", "aux4", "aux3"]
    with pytest.raises(SedonaError, match=r"distinct boundary layers in 1..6, got \[2, 2\]"):
        rank_boundaries(alpha, [[2, "aux1"], [2, "aux2"]])


@pytest.mark.parametrize("k", [0, 5, 2.0, True])
def test_bad_K(k):
    with pytest.raises(SedonaError, match=r"K must be an integer in 1..4"):
        discretize(_alpha([0, 1, 2]), [[0] * 4] * 3, k, POOL, "small", 4)


def test_shape_errors():
    with pytest.raises(SedonaError, match="one row per boundary"):
        discretize(_alpha([0, 1]), [[0] * 4] * 2, 2, POOL, "small", 4)
    with pytest.raises(SedonaError, match=r"alpha must have shape \[L-1, 2\]"):
        rank_boundaries([[0.0, 1.0, 2.0]])
    with pytest.raises(SedonaError, match="beta row has 3 entries"):
        best_head([0, 1, 2], POOL)
