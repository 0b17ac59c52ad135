"""Planning from decouplings: alpha scores, heads, the shipped cuts, and planned files that predict what they say."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sedona_runtime.decoupling import (BlockSpec, Decoupling, list_shipped, load_decoupling, read_decoupling,
                                      save_decoupling, uniform_decoupling)
from sedona_runtime.decoupling.discretize import boundary_scores
from sedona_runtime.planning.cost_model import CostModel
from sedona_runtime.planning.planner import alpha_score, boundary_heads, make_plan, planned_decoupling
from sedona_runtime.planning.predict import predicted_speedup
from sedona_runtime.utils.errors import SedonaError

POOL = ("aux1", "aux2", "aux3", "aux4", "mlp_sr")


def _cost_model(arch: str, L: int) -> CostModel:
    # Later layers cheaper, heads cheaper late too: an imbalanced-by-default network like a ResNet.
    layer = [1.0 + (L - l) / L for l in range(L)]
    heads = {h: [0.1 * (i + 1) * (L - b) / L for b in range(L - 1)] for i, h in enumerate(POOL)}
    return CostModel(arch=arch, num_layers=L, unit="macs", layer_cost=layer, head_cost=heads, classifier_cost=0.3)


def test_boundary_scores_are_softmax_local() -> None:
    # The planner scores boundaries with the discretisation's own function; extreme logits stay exact.
    alpha = [[0.3, -1.2], [5.0, 5.0], [1000.0, -1000.0], [-1000.0, 1000.0], [-7.7, 7.7]]
    ref = np.exp(np.array(alpha)[:, 0] - np.logaddexp(np.array(alpha)[:, 0], np.array(alpha)[:, 1]))
    # Two algebraically equal forms of the same softmax: a few ulps apart at most.
    assert boundary_scores(alpha) == pytest.approx(ref.tolist(), rel=1e-12, abs=1e-300)
    assert boundary_scores(alpha)[1] == 0.5 and boundary_scores(alpha)[2] == 1.0 and boundary_scores(alpha)[3] == 0.0


@pytest.mark.parametrize("name", list_shipped())
def test_shipped_cut_is_the_top_of_the_front(name: str) -> None:
    """SEDONA's discretisation takes the top-(K-1) boundaries: the DP's unconstrained optimum. Exactly,
    but for resnet152_k16: there the paper's Table 10 (the shipped files' ranking) takes layers 31, 37,
    38, 48, 49, which float64 scores within 1e-8 of 0.5, where the float64 scores rank 32, 33, 35, 39, 43
    (within 3e-8 of 0.5) first; so the shipped cut is below the top by at most the sum of those
    boundaries' distances from 0.5."""
    dec = load_decoupling(name)
    plan = make_plan(dec, _cost_model(dec.arch, dec.num_layers))
    assert plan.input_score == alpha_score(plan.scores, dec.boundaries)
    table = dict(dec.ranking)
    assert boundary_heads(dec) == [table.get(i + 1, dec.head_pool[int(np.argmax(r))]) for i, r in enumerate(dec.beta)]
    top = plan.front[0]
    if name != "resnet152_k16":
        # No other cut has an equal score, so the top point is the shipped cut itself, and (the plan's
        # heads being the file's) it predicts exactly what the file does.
        assert top.score == plan.input_score and top.boundaries == tuple(dec.boundaries)
        assert top.speedup == plan.input_prediction.speedup
    else:
        swapped = set(top.boundaries) ^ set(dec.boundaries)
        assert swapped == {31, 37, 38, 48, 49, 32, 33, 35, 39, 43}
        assert 0 < top.score - plan.input_score <= sum(abs(plan.scores[b - 1] - 0.5) for b in swapped) < 1e-7


def test_planned_decoupling_round_trips_and_predicts_its_record(tmp_path) -> None:
    dec = load_decoupling("resnet101_k4")
    cm = _cost_model(dec.arch, dec.num_layers)
    target = (plan0 := make_plan(dec, cm)).front[0].speedup * 1.5
    plan = make_plan(dec, cm, 4, target)
    assert plan0.front == plan.front
    chosen = plan.chosen
    assert chosen is not None and chosen.speedup >= target
    assert all(c.score <= chosen.score for c in plan.front if c.speedup >= target)
    out = planned_decoupling(dec, plan, chosen)
    save_decoupling(out, tmp_path / "planned.json")
    back = read_decoupling(tmp_path / "planned.json")
    assert back == out and back.boundaries == list(chosen.boundaries) and back.alpha == dec.alpha
    assert predicted_speedup(cm, back) == chosen.speedup  # same costs, same float
    assert f"predicted speedup {chosen.speedup:.3f}x" in back.source


def test_infeasible_target_leaves_the_fastest_cut() -> None:
    dec = load_decoupling("resnet152_k4")
    plan = make_plan(dec, _cost_model(dec.arch, dec.num_layers), 4, 100.0)
    assert plan.chosen is None and plan.fastest == plan.front[-1] and plan.fastest.speedup < 4.0


def test_without_alpha_the_front_is_the_most_balanced_cut() -> None:
    dec = uniform_decoupling("resnet50", 16, 4, "mlp_sr")
    cm = _cost_model("resnet50", 16)
    plan = make_plan(dec, cm, 4, head="mlp_sr")
    assert not plan.has_alpha and plan.input_score is None
    assert plan.front == [plan.fastest] and plan.fastest.score == 0.0
    assert plan.fastest.speedup >= plan.uniform.speedup == predicted_speedup(cm, dec)


def test_without_beta_the_decouplings_one_head_is_used() -> None:
    """dgl:K and friends use one head throughout: planning on compute only keeps it (or takes --head)."""
    dec = uniform_decoupling("resnet50", 16, 4, "mlp_sr")
    assert boundary_heads(dec) == ["mlp_sr"] * 15
    assert boundary_heads(dec, "aux2") == ["aux2"] * 15
    plan = make_plan(dec, _cost_model("resnet50", 16))
    assert plan.heads_of(plan.fastest) == ["mlp_sr"] * 3 and not plan.has_alpha


def test_bad_plans_are_clear_errors() -> None:
    dec = load_decoupling("resnet101_k4")
    with pytest.raises(SedonaError, match="cost model has 16 layers"):
        make_plan(dec, _cost_model("resnet101", 16))
    with pytest.raises(SedonaError, match="cost model is for 'vgg19'"):
        make_plan(dec, _cost_model("vgg19", 33))
    with pytest.raises(SedonaError, match="minimum speedup"):
        make_plan(dec, _cost_model("resnet101", 33), 4, -1.0)
    mixed = Decoupling(arch="resnet50", num_layers=16,
                       blocks=[BlockSpec(1, 4, "aux1"), BlockSpec(5, 8, "aux4"), BlockSpec(9, 16, None)])
    with pytest.raises(SedonaError, match="no beta/head_pool to choose heads from and its blocks use heads aux1, aux4"):
        boundary_heads(mixed)
    assert math.isfinite(make_plan(dec, _cost_model("resnet101", 33), 33).front[0].speedup)


def test_resnet152_front_with_the_released_alpha_equals_brute_force() -> None:
    """50 layers, the released alpha (many near-ties at 0.5) and argmax-beta heads: all 18,424 K=4 cuts."""
    import itertools

    from sedona_runtime.planning.dp import CutProblem
    from sedona_runtime.planning.pareto import pareto_front

    dec = load_decoupling("resnet152_k4")
    cm = _cost_model(dec.arch, dec.num_layers)
    problem = CutProblem.from_cost_model(cm, boundary_scores(dec.alpha), boundary_heads(dec), 4)
    pairs = {(c.score, c.max_cost) for c in (problem.evaluate(b) for b in itertools.combinations(range(1, 50), 3))}
    # Non-dominated pairs: sorted by score descending, keep those strictly faster than all before.
    brute, fastest = [], math.inf
    for score, cost in sorted(pairs, key=lambda p: (-p[0], p[1])):
        if cost < fastest:
            brute.append((score, cost))
            fastest = cost
    assert [(c.score, c.max_cost) for c in pareto_front(problem)] == brute
