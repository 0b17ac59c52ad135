"""The predicted speedup, computed by hand, and its agreement with the benchmark's ideal-speedup formula."""
from __future__ import annotations

import pytest

from sedona_runtime.decoupling import BlockSpec, Decoupling, backprop_decoupling
from sedona_runtime.planning.cost_model import CostModel
from sedona_runtime.planning.predict import ideal_speedup, predict, predicted_speedup
from sedona_runtime.planning.profile import from_profile
from sedona_runtime.utils.errors import SedonaError


def _toy() -> CostModel:
    # Binary fractions: every sum below is exact in floating point, so == is the right test.
    return CostModel(arch="toy", num_layers=4, unit="s", layer_cost=[1.0, 2.0, 3.0, 4.0],
                     head_cost={"aux1": [0.5, 0.25, 0.125]}, classifier_cost=1.0,
                     transfer_cost=[0.5, 0.25, 0.125])


def _dec(blocks: list[tuple[int, int, str | None]]) -> Decoupling:
    return Decoupling(arch="toy", num_layers=4, blocks=[BlockSpec(*b) for b in blocks])


def test_hand_computed_example() -> None:
    cm = _toy()
    dec = _dec([(1, 2, "aux1"), (3, 3, "aux1"), (4, 4, None)])
    pred = predict(cm, [(1, 2, "aux1"), (3, 3, "aux1"), (4, 4, None)])
    # block 1: layers 1+2 + aux1 after layer 2          = 3 + 0.25        = 3.25
    # block 2: transfer after 2 + layer 3 + aux1 after 3 = 0.25 + 3 + 0.125 = 3.375
    # block 3: transfer after 3 + layer 4 + classifier   = 0.125 + 4 + 1    = 5.125
    # baseline: all layers + classifier, no transfers    = 10 + 1           = 11
    assert [b.cost for b in pred.blocks] == [3.25, 3.375, 5.125]
    parts = [(b.transfer_in, b.layers, b.head_cost) for b in pred.blocks]
    assert parts == [(0.0, 3.0, 0.25), (0.25, 3.0, 0.125), (0.125, 4.0, 1.0)]
    assert pred.baseline == 11.0 and pred.bottleneck == 2
    assert pred.speedup == 11.0 / 5.125 == predicted_speedup(cm, dec)
    assert pred.to_dict()["blocks"][2]["share"] == 5.125 / 11.0


def test_prediction_is_the_benchmark_formula_on_the_same_costs() -> None:
    """A profile whose per-layer times sum to the benchmark's per-block step times predicts its ideal speedup."""
    fwd, bwd = [0.010, 0.020, 0.030, 0.015], [0.020, 0.040, 0.060, 0.030]
    profile = {
        "device": "cpu", "layers": [{"index": i + 1, "fwd_s": f, "bwd_s": b} for i, (f, b) in enumerate(zip(fwd, bwd))],
        "classifier": {"fwd_s": 0.001, "bwd_s": 0.002},
        "heads": {"aux1": [{"after": a, "fwd_s": 0.003, "bwd_s": 0.004} for a in (1, 2, 3)]},
    }
    cm = from_profile(profile)
    dec = _dec([(1, 2, "aux1"), (3, 4, None)])
    # What the benchmark computes: baseline step = one device running every layer and the
    # classifier; block step = its layers + its head; ideal = baseline / slowest block, with the
    # profile's numbers added in the same order (layer by layer, fwd then bwd, then the head).
    layer = [f + b for f, b in zip(fwd, bwd)]
    baseline = layer[0] + layer[1] + layer[2] + layer[3] + (0.001 + 0.002)
    block1 = layer[0] + layer[1] + (0.003 + 0.004)
    block2 = layer[2] + layer[3] + (0.001 + 0.002)
    assert predicted_speedup(cm, dec) == ideal_speedup(baseline, [block1, block2]) == baseline / max(block1, block2)


def test_one_block_is_backprop_exactly() -> None:
    cm = _toy()
    assert predicted_speedup(cm, backprop_decoupling("toy", 4)) == 1.0


@pytest.mark.parametrize("blocks,match", [
    ([(1, 2, "aux1"), (4, 4, None)], "should start at layer 3"),
    ([(1, 2, "aux1"), (3, 3, None)], "cover layers 1..3"),
    ([(1, 2, None), (3, 4, None)], "block 1 .* has no head"),
    ([(1, 2, "mlp_sr"), (3, 4, None)], "no costs for head 'mlp_sr'"),
])
def test_bad_blocks(blocks, match: str) -> None:
    with pytest.raises(SedonaError, match=match):
        predict(_toy(), blocks)


def test_ideal_speedup_rejects_nonsense() -> None:
    with pytest.raises(SedonaError, match="at least one block"):
        ideal_speedup(1.0, [])
    with pytest.raises(SedonaError, match="positive"):
        ideal_speedup(1.0, [0.0])
