"""The resume rules, one table for train, pipeline and search runs: every key a run records is declared, every
free key may change, every fixed key is refused in one line naming it with what to do instead."""
from __future__ import annotations

import copy

import pytest

from sedona_runtime.training.resume_rules import KINDS, RULES, check_resume, free_keys, rule_for
from sedona_runtime.utils.config import flatten, to_dict
from sedona_runtime.utils.errors import SedonaError

WHERE = "/runs/r"


def _spec_json() -> dict:
    """A training run's config.json (a resolved spec) without reading any data."""
    from sedona_runtime.decoupling.baselines import uniform_decoupling
    from sedona_runtime.training.config import TrainConfig, resolve_defaults
    from sedona_runtime.training.spec import InputSpec, RunSpec

    cfg = resolve_defaults(TrainConfig(decoupling="dgl:2", steps=10, batch_size=8, out_dir="/runs/r"))
    dec = uniform_decoupling("small", 6, 2, "mlp_sr")
    inp = InputSpec([3, 8, 8], [0.5] * 3, [0.25] * 3, 255.0, "uint8", {"kind": "pad_crop_flip", "padding": 1,
                                                                        "flip": False})
    return RunSpec(cfg, dec, inp, [str(i) for i in range(10)], "digits").to_json()


def _config(kind: str) -> dict:
    from sedona_runtime.pipeline.config import PipelineConfig
    from sedona_runtime.search.config import SearchConfig

    if kind == "search":
        return to_dict(SearchConfig())
    config = _spec_json()
    if kind == "pipeline":
        config["pipeline"] = {k: v for k, v in to_dict(PipelineConfig(blocks=2)).items() if k != "train"}
    return config


def _changed(value):
    """Another value of the same kind (what a resume with another option would record)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 2
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value + value[:1] if value else [1]
    return 4  # None: something given


def _set(config: dict, key: str, value) -> dict:
    out = copy.deepcopy(config)
    *path, last = key.split(".")
    node = out
    for part in path:
        node = node[part]
    node[last] = value
    return out


def _keys(kind: str) -> dict:
    return {k: v for k, v in flatten(_config(kind)).items()}


@pytest.mark.parametrize("kind", KINDS)
def test_every_key_a_run_records_is_declared(kind):
    undeclared = sorted(k for k in _keys(kind) if rule_for(kind, k) is None)
    assert not undeclared, f"declare these keys in training/resume_rules.py ({kind}): {undeclared}"
    assert all(r.instead() for r in RULES[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_free_keys_may_change_and_fixed_keys_are_refused_with_their_message(kind):
    saved = _config(kind)
    free = fixed = 0
    for key, value in _keys(kind).items():
        rule = rule_for(kind, key)
        new = _changed(value)
        if key == "pipeline.replicas":
            new = 4  # the batch of 8 splits into 4 shards
        now = _set(saved, key, new)
        if rule.free:
            check_resume(kind, saved, now, WHERE)  # accepted
            free += 1
            continue
        with pytest.raises(SedonaError) as info:
            check_resume(kind, saved, now, WHERE)
        line = str(info.value)
        assert line.startswith(f"cannot resume {WHERE}: the config differs from its config.json: {key} was "
                               f"{value!r}, now {new!r}: {rule.instead()}"), line
        assert "\n" not in line and (not rule.option or rule.option.split("/")[0] in line or rule.why)
        fixed += 1
    assert free and fixed
    assert check_resume(kind, saved, copy.deepcopy(saved), WHERE) is None


def test_the_tables_name_what_each_kind_may_change():
    speed = {"channels_last", "compile", "cudnn_benchmark"}
    assert speed | {"out_dir", "device", "log_interval", "epochs"} <= set(free_keys("train", "train"))
    assert {"lr", "steps", "batch_size", "seed", "decoupling"}.isdisjoint(free_keys("train", "train"))
    assert set(free_keys("pipeline", "pipeline")) == {
        "replicas", "replica_placement", "queue_depth", "window", "devices", "threads", "timeout", "transport",
        "device_maps", "iface", "port", "heartbeat", "heartbeat_timeout", "timeline", "resume"}
    assert "blocks" not in free_keys("pipeline", "pipeline")
    assert set(free_keys("search")) == {"device", "checkpoint_every", "fast_heads", "recompute", "model.num_classes",
                                        "model.stem", "model.in_channels", "model.import_root", "data.workers",
                                        "data.import_root"}


def test_replicas_may_change_only_while_the_batch_splits():
    saved = _config("pipeline")
    check_resume("pipeline", saved, _set(saved, "pipeline.replicas", 2), WHERE)
    with pytest.raises(SedonaError, match=r"^cannot resume /runs/r: --batch-size 8 does not split into --replicas 3 "):
        check_resume("pipeline", saved, _set(saved, "pipeline.replicas", 3), WHERE)


def test_a_run_written_before_the_spec_is_not_compared_on_what_it_did_not_record():
    saved = _config("train")
    old = {k: v for k, v in saved.items() if k not in ("spec_version", "input")}
    check_resume("train", {**old, "input": None, "spec_version": 1}, saved, WHERE)
    check_resume("train", old, saved, WHERE)
    with pytest.raises(SedonaError, match="train.lr was"):
        check_resume("train", old, _set(saved, "train.lr", 0.5), WHERE)


def test_several_differences_are_named_on_the_one_line():
    saved = _config("train")
    now = _set(_set(_set(saved, "train.lr", 0.5), "train.seed", 3), "train.steps", 11)
    with pytest.raises(SedonaError) as info:
        check_resume("train", saved, now, WHERE)
    assert "train.lr was" in str(info.value) and "(also differing: train.seed, train.steps)" in str(info.value)
