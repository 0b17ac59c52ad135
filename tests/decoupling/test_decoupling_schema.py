"""Decoupling file format: round trip, atomic save, and one clear error per kind of bad file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sedona_runtime.decoupling import BlockSpec, Decoupling, read_decoupling, save_decoupling, validate_for
from sedona_runtime.decoupling.schema import FORMAT
from sedona_runtime.utils.errors import SedonaError


def _good() -> dict:
    return {
        "format": FORMAT,
        "arch": "small",
        "num_layers": 4,
        "blocks": [
            {"first": 1, "last": 2, "head": "aux1"},
            {"first": 3, "last": 3, "head": "mlp_sr"},
            {"first": 4, "last": 4, "head": None},
        ],
        "alpha": [[0.1, -0.1], [0.2, 0.3], [1.0, 0.0]],
        "beta": [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]],
        "head_pool": ["aux1", "aux2"],
        "ranking": [[2, "aux2"], [3, "aux1"]],
        "source": "hand-written",
    }


def _write(tmp_path: Path, data, name: str = "dec.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def test_round_trip_through_file(tmp_path):
    path = _write(tmp_path, _good())
    dec = read_decoupling(path)
    assert dec.K == 3 and dec.boundaries == [2, 3] and dec.heads == ["aux1", "mlp_sr"]
    assert dec.blocks[0] == BlockSpec(1, 2, "aux1")
    out = save_decoupling(dec, tmp_path / "sub" / "copy.json")
    assert json.loads(out.read_text()) == _good()
    assert read_decoupling(out) == dec
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # atomic: no temp left


def test_optional_fields_may_be_absent(tmp_path):
    data = _good()
    for key in ("alpha", "beta", "head_pool", "ranking", "source"):
        del data[key]
    dec = read_decoupling(_write(tmp_path, data))
    assert dec.alpha is None and dec.beta is None and dec.source == ""
    assert dec.to_json() == data


def _mutate(**changes):
    data = _good()
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return data


BLOCKS_OVERLAP = [{"first": 1, "last": 2, "head": "aux1"}, {"first": 2, "last": 4, "head": None}]
BLOCKS_GAP = [{"first": 1, "last": 1, "head": "aux1"}, {"first": 3, "last": 4, "head": None}]
BLOCKS_SHORT = [{"first": 1, "last": 2, "head": "aux1"}, {"first": 3, "last": 3, "head": None}]
BLOCKS_LONG = [{"first": 1, "last": 2, "head": "aux1"}, {"first": 3, "last": 5, "head": None}]
BLOCKS_START = [{"first": 2, "last": 4, "head": None}]
BLOCKS_REVERSED = [{"first": 1, "last": 2, "head": "aux1"}, {"first": 4, "last": 3, "head": None}]


@pytest.mark.parametrize(
    "data, expected",
    [
        (_mutate(arch=KeyError), "missing field 'arch'"),
        (_mutate(blocks=KeyError), "missing field 'blocks'"),
        (_mutate(format=KeyError), "missing field 'format'"),
        (_mutate(format="other/2"), "format must be"),
        (_mutate(extra=1), "unknown field(s) 'extra'"),
        (_mutate(num_layers="4"), "'num_layers' must be a positive integer"),
        (_mutate(num_layers=True), "'num_layers' must be a positive integer"),
        (_mutate(arch=3), "'arch' must be a non-empty string"),
        (_mutate(blocks=[]), "'blocks' must be a non-empty list"),
        (_mutate(blocks=[{"first": 1, "last": 4}]), "blocks[0]: missing field 'head'"),
        (_mutate(blocks=[{"first": 1.0, "last": 4, "head": None}]), "blocks[0]: 'first' must be an integer"),
        (_mutate(blocks=[{"first": 1, "last": 4, "head": 7}]), "blocks[0]: 'head' must be a head name"),
        (_mutate(blocks=BLOCKS_OVERLAP), "block 2 (layers 2..4) overlaps the previous block"),
        (_mutate(blocks=BLOCKS_GAP), "layers 2..2 are in no block"),
        (_mutate(blocks=BLOCKS_SHORT), "blocks cover layers 1..3 but the network has 4 layers"),
        (_mutate(blocks=BLOCKS_LONG), "blocks cover layers 1..5 but the network has 4 layers"),
        (_mutate(blocks=BLOCKS_START), "the first block must start at layer 1"),
        (_mutate(blocks=BLOCKS_REVERSED), "block 2 has first layer 4 after its last layer 3"),
        (_mutate(blocks=[{"first": 1, "last": 2, "head": "aux9"}, {"first": 3, "last": 4, "head": None}]),
         "block 1 has unknown head 'aux9'"),
        (_mutate(blocks=[{"first": 1, "last": 2, "head": None}, {"first": 3, "last": 4, "head": None}]),
         "block 1 needs an auxiliary head"),
        (_mutate(blocks=[{"first": 1, "last": 4, "head": "aux1"}]), "the last block must have head null"),
        (_mutate(alpha=[[0.0, 0.0]]), "'alpha' must be 3x2"),
        (_mutate(alpha=[[0.0, 0.0, 1.0]] * 3), "'alpha' must be 3x2"),
        (_mutate(alpha=[[0.0, "x"]] * 3), "'alpha'[0] must contain finite numbers"),
        (_mutate(beta=[[0.0, 1.0, 2.0]] * 3), "'beta' must be 3x2"),
        (_mutate(head_pool=KeyError), "'beta' needs 'head_pool'"),
        (_mutate(head_pool=["aux1", "nope"]), "head_pool has unknown head 'nope'"),
        (_mutate(head_pool="aux1"), "'head_pool' must be a non-empty list"),
        (_mutate(source=5), "'source' must be a string"),
        (_mutate(ranking=[[2, "aux2"], [2, "aux1"]]), "'ranking' must name distinct boundary layers in 1..3"),
        (_mutate(ranking=[[4, "aux2"]]), "'ranking' must name distinct boundary layers in 1..3"),
        (_mutate(ranking=[[1, "aux9"]]), "'ranking' has unknown head 'aux9'"),
        (_mutate(ranking=[[1.5, "aux1"]]), "'ranking' must be a list of [layer, head] pairs"),
        (_mutate(ranking=[1, 2]), "'ranking' must be a list of [layer, head] pairs"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_file_names_file_and_problem(tmp_path, data, expected):
    path = _write(tmp_path, data)
    with pytest.raises(SedonaError) as err:
        read_decoupling(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_json_syntax_error_names_file_and_line(tmp_path):
    path = _write(tmp_path, '{\n  "format": "sedona-decoupling/1",\n  "arch": small\n}\n')
    with pytest.raises(SedonaError, match=rf"^{path}:3:\d+: invalid JSON"):
        read_decoupling(path)


def test_missing_and_unreadable_file(tmp_path):
    with pytest.raises(SedonaError, match="decoupling file not found"):
        read_decoupling(tmp_path / "absent.json")
    with pytest.raises(SedonaError, match="cannot read decoupling file"):
        read_decoupling(tmp_path)  # a directory


def test_validate_for_checks_arch_and_layer_count(tmp_path):
    dec = read_decoupling(_write(tmp_path, _good()))
    validate_for(dec, "small", 4)
    with pytest.raises(SedonaError, match=r"made for arch 'small', but the model is 'resnet50'"):
        validate_for(dec, "resnet50", 4)
    with pytest.raises(SedonaError, match=r"has 4 layers, but model 'small' has 6"):
        validate_for(dec, "small", 6)


def test_save_refuses_invalid(tmp_path):
    bad = Decoupling("small", 3, [BlockSpec(1, 2, "aux1")])
    with pytest.raises(SedonaError, match="blocks cover layers 1..2"):
        save_decoupling(bad, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
