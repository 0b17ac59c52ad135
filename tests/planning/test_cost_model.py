"""CostModel: JSON round trip, validation, and construction from multiply-adds and measured profiles."""
from __future__ import annotations

import json

import pytest

from sedona_runtime.planning.cost_model import BACKWARD_FACTOR, CostModel, from_flops, from_layer_macs
from sedona_runtime.planning.profile import from_profile
from sedona_runtime.utils.errors import SedonaError

from planning_helpers import make_random_cost_model


def _profile(L: int = 3) -> dict:
    return {
        "device": "test-cpu", "arch": "toy", "batch_size": 4, "input_shape": [3, 8, 8],
        "layers": [{"index": i, "fwd_s": 0.5 * i, "bwd_s": 1.0 * i, "opt_s": 0.25} for i in range(L, 0, -1)],
        "classifier": {"fwd_s": 0.125, "bwd_s": 0.25},
        "heads": {"aux1": [{"after": a, "fwd_s": 0.5, "bwd_s": 0.5} for a in range(1, L)],
                  "aux2": [{"after": 1, "fwd_s": 0.75, "bwd_s": 0.75}]},
        "boundary_bytes": [2048.0] * (L - 1), "transfer_bytes_per_s": 1024.0,
    }


def test_json_round_trip(tmp_path) -> None:
    cm = make_random_cost_model(5, 6, integer=False, holes=True)
    cm.boundary_bytes, cm.transfer_bytes_per_s, cm.input_shape = [1.0] * 5, 2.0, [3, 32, 32]
    assert CostModel.from_dict(json.loads(json.dumps(cm.to_dict()))) == cm
    cm.save(tmp_path / "cm.json")
    assert CostModel.load(tmp_path / "cm.json") == cm


@pytest.mark.parametrize("change,match", [
    ({"layer_cost": [1.0, 2.0]}, "layer_cost: expected a list of 3"),
    ({"layer_cost": [1.0, -2.0, 3.0]}, r"layer_cost\[1\]"),
    ({"head_cost": {"aux1": [1.0]}}, r"head_cost\[aux1\]"),
    ({"transfer_cost": [1.0, float("nan")]}, r"transfer_cost\[1\]"),
    ({"classifier_cost": "x"}, "classifier_cost"),
    ({"bogus": 1}, "unknown field"),
])
def test_bad_fields_are_named(change: dict, match: str) -> None:
    data = make_random_cost_model(0, 3).to_dict() | change
    with pytest.raises(SedonaError, match=match):
        CostModel.from_dict(data)


def test_missing_field_and_bad_files(tmp_path) -> None:
    data = make_random_cost_model(0, 3).to_dict()
    del data["layer_cost"]
    with pytest.raises(SedonaError, match="missing field.*layer_cost"):
        CostModel.from_dict(data)
    with pytest.raises(SedonaError, match="no such file"):
        CostModel.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SedonaError, match="cannot read JSON"):
        CostModel.load(tmp_path / "bad.json")


def test_from_layer_macs_counts_forward_plus_twice_backward() -> None:
    cm = from_layer_macs("toy", [10, 20], {"aux1": [5]}, 2, batch_size=3)
    k = (1 + BACKWARD_FACTOR) * 3  # = 9: forward + 2x backward, times the batch
    assert (cm.unit, cm.layer_cost, cm.head_cost, cm.classifier_cost) == ("macs", [90.0, 180.0], {"aux1": [45.0]}, 18.0)
    assert cm.transfer_cost == [0.0]
    assert k == 9.0
    with pytest.raises(SedonaError, match="device rate"):
        from_layer_macs("toy", [10, 20], {}, 2, boundary_bytes=[8], transfer_bytes_per_s=4.0)
    s = from_layer_macs("toy", [10, 20], {}, 2, boundary_bytes=[8], transfer_bytes_per_s=4.0, device_macs_per_s=30.0)
    assert s.unit == "s" and s.layer_cost == [1.0, 2.0] and s.transfer_cost == [2.0]


def test_from_profile_sums_forward_backward_and_optimizer(tmp_path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(_profile()))
    cm = from_profile(path, arch="toy")
    assert cm.unit == "s" and cm.device == "test-cpu" and cm.num_layers == 3
    assert cm.layer_cost == [1.75, 3.25, 4.75]  # 0.5 i + i + 0.25 for layers listed out of order
    assert cm.classifier_cost == 0.375
    assert cm.head_cost == {"aux1": [1.0, 1.0], "aux2": [1.5, None]}
    assert cm.transfer_cost == [2.0, 2.0]
    with pytest.raises(SedonaError, match="no cost for head 'aux2' after layer 2"):
        cm.block_cost(1, 2, "aux2")


@pytest.mark.parametrize("mutate,match", [
    (lambda p: p["layers"].pop(), r"index must be a distinct integer in 1\.\.2"),
    (lambda p: p["layers"][0].update(index=1), "distinct integer"),
    (lambda p: p["layers"][1].pop("bwd_s"), r"layers\[1\]\.bwd_s"),
    (lambda p: p.pop("classifier"), "missing 'classifier'"),
    (lambda p: p["heads"]["aux1"][0].update(after=3), r"after must be an integer in 1\.\.2"),
    (lambda p: p.update(arch="resnet50"), "profile is for 'resnet50', not 'toy'"),
    (lambda p: p.update(transfer_bytes_per_s=0), "transfer_bytes_per_s must be a positive"),
])
def test_bad_profiles_are_named(mutate, match: str) -> None:
    p = _profile()
    mutate(p)
    with pytest.raises(SedonaError, match=match):
        from_profile(p, arch="toy")


def test_from_flops_matches_the_analysis_counts() -> None:
    from sedona_runtime.analysis.costs import model_costs
    from sedona_runtime.models.registry import ModelConfig

    cfg = ModelConfig(arch="small")
    ref = model_costs(cfg, (3, 32, 32), heads=["aux1", "aux4"])
    cm = from_flops(cfg, (3, 32, 32), 2, ["aux1", "aux4"])
    k = (1 + BACKWARD_FACTOR) * 2
    assert cm.layer_cost == [l["flops"] * k for l in ref["layers"]]
    assert cm.head_cost["aux4"] == [l["heads"]["aux4"]["flops"] * k for l in ref["layers"][:-1]]
    assert cm.classifier_cost == ref["classifier"]["flops"] * k
    assert cm.boundary_bytes == [2 * l["channels"] * l["size"] ** 2 * 4 for l in ref["layers"][:-1]]
    assert cm.transfer_cost == [0.0] * (cm.num_layers - 1)  # no bandwidth given: not modelled


def test_measured_profile_is_a_valid_cost_model() -> None:
    import torch

    from sedona_runtime.models.layered import layer_output_shapes
    from sedona_runtime.models.registry import ModelConfig, build_model
    from sedona_runtime.planning.profiler import measure_profile

    prof = measure_profile(ModelConfig(arch="small"), (3, 16, 16), 2, ["aux4"], warmup=0, iters=1)
    cm = from_profile(prof, arch="small")
    assert cm.num_layers == 6 and cm.unit == "s" and len(prof["boundary_bytes"]) == 5
    assert all(c > 0 for c in cm.layer_cost) and cm.classifier_cost > 0
    assert all(c is not None and c > 0 for c in cm.head_cost["aux4"])
    # Activation bytes per boundary: batch 2 x fp32 x C*H*W of the real layer outputs.
    with torch.device("meta"):
        shapes = layer_output_shapes(build_model(ModelConfig(arch="small")), (3, 16, 16))
    assert prof["boundary_bytes"] == [2 * 4 * c * h * w for c, h, w in shapes[:-1]]
