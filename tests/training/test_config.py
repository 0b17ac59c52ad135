"""TrainConfig: JSON round trip, per-data-set and per-method defaults, clear errors for bad values."""
from __future__ import annotations

import json
import re

import pytest

from sedona_runtime.training.config import TrainConfig, method_of, resolve_defaults
from sedona_runtime.utils.config import from_dict, to_dict
from sedona_runtime.utils.errors import SedonaError


def test_round_trips_through_json():
    cfg = resolve_defaults(TrainConfig(decoupling="dgl:4", steps=123, lr=0.2))
    back = from_dict(TrainConfig, json.loads(json.dumps(to_dict(cfg))))
    assert back == cfg
    assert back.model.arch == "small" and back.data.dataset == "digits"


def test_cifar_defaults_follow_appendix_e2():
    cfg = resolve_defaults(TrainConfig(data=from_dict(TrainConfig, {"data": {"dataset": "cifar10",
                                                                              "data_dir": "x"}}).data))
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.final_lr, cfg.momentum) == (64_000, 128, 0.1, 0.001, 0.9)
    # The batch size lives in one place, TrainConfig.batch_size (DataConfig's is the search's).
    assert cfg.data.batch_size is None and cfg.label_smoothing == 0.1 and cfg.optimizer == "sgd"
    assert cfg.weight_decay == 1e-4
    r152 = resolve_defaults(from_dict(TrainConfig, {"model": {"arch": "resnet152"},
                                                    "data": {"dataset": "cifar10", "data_dir": "x"}}))
    assert r152.weight_decay == 2e-4


def _resolved(**sections) -> TrainConfig:
    return resolve_defaults(from_dict(TrainConfig, sections))


def test_method_specific_defaults():
    assert method_of("backprop") == "backprop" and method_of("dgl:4") == "dgl"
    assert method_of("resnet152_k4") == "sedona" and method_of("sedona:2") == "sedona"
    # PredSim takes Adam only at Tiny-ImageNet scale (an ImageFolder tree at its default 64 px) ...
    tiny = {"dataset": "imagefolder", "data_dir": "x"}
    ps = _resolved(decoupling="predsim:4", data=tiny)
    assert ps.data.image_size == 64
    assert (ps.optimizer, ps.lr, ps.final_lr, ps.weight_decay, ps.label_smoothing) == ("adam", 5e-4, 1e-6, 1e-4, 0.0)
    # ... and keeps the SGD row at CIFAR (E.2 names Adam for Tiny-ImageNet only), still without smoothing.
    cifar = _resolved(decoupling="predsim:4", data={"dataset": "cifar10", "data_dir": "x"})
    assert (cifar.optimizer, cifar.lr, cifar.final_lr, cifar.label_smoothing) == ("sgd", 0.1, 0.001, 0.0)


def test_method_comes_from_the_decoupling_heads_not_the_spec_string(tmp_path):
    from sedona_runtime.decoupling import save_decoupling
    from sedona_runtime.decoupling.baselines import baseline_decoupling

    path = tmp_path / "mine.json"
    save_decoupling(baseline_decoupling("predsim", "small", 6, 3), path)
    assert method_of(str(path)) == "predsim"
    cfg = _resolved(decoupling=str(path), data={"dataset": "imagefolder", "data_dir": "x"})
    assert (cfg.optimizer, cfg.label_smoothing) == ("adam", 0.0)
    save_decoupling(baseline_decoupling("dgl", "small", 6, 3), path)
    assert method_of(str(path)) == "dgl"
    with pytest.raises(SedonaError):
        method_of(str(tmp_path / "missing.json"))


def test_imagenet_row_at_imagenet_size():
    data = {"dataset": "imagefolder", "data_dir": "x", "image_size": 224}
    r101 = _resolved(model={"arch": "resnet101"}, data=data)
    assert (r101.steps, r101.batch_size, r101.lr, r101.final_lr, r101.weight_decay, r101.optimizer) == (
        600_000, 256, 0.1, 1e-4, 5e-5, "sgd")
    r152 = _resolved(model={"arch": "resnet152"}, data=data)
    assert (r152.lr, r152.final_lr, r152.weight_decay) == (0.05, 1e-5, 5e-5)  # no 2e-4 at ImageNet
    assert _resolved(decoupling="predsim:4", data=data).optimizer == "sgd"
    tiny152 = _resolved(model={"arch": "resnet152"}, data={"dataset": "imagefolder", "data_dir": "x"})
    assert (tiny152.steps, tiny152.lr, tiny152.final_lr, tiny152.weight_decay) == (30_000, 0.1, 0.001, 2e-4)


def test_explicit_values_win_over_defaults():
    cfg = resolve_defaults(TrainConfig(steps=7, batch_size=5, lr=0.3, weight_decay=0.0, label_smoothing=0.0))
    assert (cfg.steps, cfg.batch_size, cfg.data.batch_size, cfg.lr, cfg.weight_decay) == (7, 5, None, 0.3, 0.0)
    assert cfg.eval_interval >= 1 and cfg.checkpoint_interval >= 1


@pytest.mark.parametrize("field,value,words", [("steps", 0, "steps"), ("lr", -1.0, "lr"),
                                               ("optimizer", "rmsprop", "optimizer"), ("batch_size", 0, "batch size"),
                                               ("dtype", "float16", "dtype")])
def test_bad_values_are_named(field, value, words):
    with pytest.raises(SedonaError, match=words):
        resolve_defaults(TrainConfig(**{field: value}))


@pytest.mark.parametrize("kind", ["trainer", "pipeline", "search"])
def test_batch_size_one_is_refused_by_the_validation_all_modes_share(kind):
    """Before any data, model or directory: the trainer and the pipeline resolve through resolve_defaults,
    the search validates its DataConfig."""
    from sedona_runtime.data.config import DataConfig

    with pytest.raises(SedonaError, match=r"must be (>=|at least) 2 \(BatchNorm cannot train on a single sample\)"):
        if kind == "trainer":
            resolve_defaults(TrainConfig(batch_size=1))
        elif kind == "pipeline":
            from sedona_runtime.pipeline.config import PipelineConfig
            from sedona_runtime.pipeline.launcher import resolve

            resolve(PipelineConfig(train=TrainConfig(batch_size=1), blocks=2))
        else:
            from sedona_runtime.search.config import SearchConfig

            SearchConfig(data=DataConfig(batch_size=1, val_fraction=0.4)).validate()


def test_epochs_resolve_to_steps_once_the_data_is_known(user_pkg, tmp_path):
    """--epochs: steps = epochs * (training samples // batch size); the intervals follow the resolved steps."""
    from sedona_runtime.data.config import DataConfig
    from sedona_runtime.models import ModelConfig
    from sedona_runtime.training.greedy import build_parts

    cfg = TrainConfig(model=ModelConfig(arch="small", width=0.25),
                      data=DataConfig(dataset="byo_user_pkg.data:build_float"),
                      epochs=3, batch_size=16, device="cpu", out_dir=str(tmp_path))
    resolved = resolve_defaults(cfg)
    assert resolved.steps is None and resolved.eval_interval is None  # not known before the data is loaded
    parts = build_parts(resolved)
    # 96 training images, 10% of each class (24 -> 2) held out: 88 left -> 5 full batches of 16 per epoch.
    assert len(parts.bundle.train) == 88
    assert (parts.cfg.steps, parts.cfg.eval_interval, parts.cfg.checkpoint_interval) == (15, 1, 3)
    assert parts.cfg.data.image_size == 12  # a data set function's image size is recorded as it is
    with pytest.raises(SedonaError, match="epochs must be >= 1"):
        resolve_defaults(TrainConfig(epochs=0))


@pytest.mark.parametrize("over, words", [
    (dict(lr=float("inf")), "lr must be a finite number > 0, got inf"),
    (dict(lr=0.01, final_lr=0.1), "final lr 0.1 is above lr 0.01"),
    (dict(final_lr=float("inf")), "final lr must be a finite number"),
    (dict(weight_decay=float("nan")), "weight decay must be a finite number"),
])
def test_learning_rates_that_cannot_decay_are_refused(over, words):
    from sedona_runtime.training.config import TrainConfig, resolve_defaults
    from sedona_runtime.utils.errors import SedonaError

    with pytest.raises(SedonaError, match=re.escape(words)):
        resolve_defaults(TrainConfig(**over))


def test_an_lr_below_the_recipes_final_rate_keeps_its_decay_ratio():
    from sedona_runtime.training.config import TrainConfig, resolve_defaults

    cfg = resolve_defaults(TrainConfig(lr=1e-4))  # digits: 0.05 -> 0.0005, a ratio of 1/100
    assert cfg.final_lr == pytest.approx(1e-6)
