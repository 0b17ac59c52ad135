"""The run spec: one resolver fills every None, the spec round-trips through JSON (config.json), the network is
built from it alone (never from a decoupling's spec string), and a config.json written before the spec is read
for --resume, evaluate and export."""
from __future__ import annotations

import json

import torch

from sedona_runtime.utils.config import flatten

from _training_helpers import synthetic_cfg

# None in a resolved spec by design: epochs when steps were given, the search's batch size (the run's is
# train.batch_size), no data directory or import root for the embedded/synthetic data and built-in networks,
# the data workers' default (decided where batches are read).
NONE_BY_DESIGN = {"train.epochs", "train.data.batch_size", "train.data.data_dir", "train.data.workers",
                  "train.model.import_root", "train.data.import_root"}


def test_the_resolver_fills_every_none_and_the_spec_round_trips_through_json(tmp_path):
    from sedona_runtime.data.augment import augment_from_spec
    from sedona_runtime.data.preprocess import RawBatch
    from sedona_runtime.training.resolver import resolve_run
    from sedona_runtime.training.spec import RunSpec

    cfg = synthetic_cfg(tmp_path / "r", steps=None, epochs=2, batch_size=None, eval_interval=None, lr=None)
    run = resolve_run(cfg)
    spec, bundle = run.spec, run.bundle
    text = json.dumps(spec.to_json())
    back = RunSpec.from_json(json.loads(text))
    assert back.to_json() == spec.to_json() and back.train == spec.train
    nones = {k for k, v in flatten(spec.to_json()).items() if v is None} - {"decoupling.alpha", "decoupling.beta",
                                                                           "decoupling.head_pool", "decoupling.ranking"}
    assert nones == NONE_BY_DESIGN - {"train.epochs"} | {"classes"}, nones  # epochs given: steps derived from it
    t = spec.train
    assert t.steps == 2 * (len(bundle.train) // t.batch_size) and t.eval_interval == max(1, t.steps // 10)
    assert (t.model.num_classes, t.model.in_channels, t.model.stem) == (4, 3, "cifar")
    assert spec.decoupling.K == 2 and spec.input_shape == (3, 8, 8) and spec.input.dtype == "uint8"
    assert (spec.input.mean, spec.input.std) == (list(bundle.train.mean), list(bundle.train.std))
    # The augmentation and statistics rebuilt from JSON compute the trainer's input bit for bit.
    assert augment_from_spec(back.input.augment).spec() == bundle.augment.spec()
    x, y = bundle.train.get_batch(torch.arange(8))
    draws = bundle.augment.draw(8, 8, 8, torch.Generator().manual_seed(0))
    from sedona_runtime.data import Preprocess

    want = Preprocess(bundle.train.mean, bundle.train.std, bundle.augment)(RawBatch(x, y, draws))
    assert torch.equal(back.input.preprocess()(RawBatch(x, y, draws)), want)


def test_the_network_is_built_from_the_spec_never_from_its_decoupling_string(tmp_path):
    """A spec whose recorded `--decoupling` names a file that exists nowhere (as on a block's machine) builds
    the same weights: the builder takes the resolved Decoupling the spec holds."""
    from sedona_runtime.training.build import build_network
    from sedona_runtime.training.resolver import resolve_run
    from sedona_runtime.training.spec import RunSpec

    spec = resolve_run(synthetic_cfg(tmp_path / "r", decoupling="sedona:2", retarget=True)).spec
    shipped = spec.to_json()
    shipped["train"]["decoupling"] = str(tmp_path / "nowhere" / "decoupling.json")
    shipped["train"]["retarget"] = False
    elsewhere = RunSpec.from_json(json.loads(json.dumps(shipped)))
    a, b = build_network(spec), build_network(elsewhere)
    assert b.decoupling.to_json() == spec.decoupling.to_json() and "retargeted" in spec.decoupling.source
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [blk.head_name for blk in b.blocks] == [blk.head_name for blk in a.blocks]


def _as_version_1(run_dir) -> dict:
    """Rewrite run_dir's config.json as sedona-runtime wrote it before the spec: no spec_version, no input
    section, train.data.batch_size a copy of train.batch_size."""
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    for key in ("spec_version", "input"):
        config.pop(key)
    config["train"]["data"]["batch_size"] = config["train"]["batch_size"]
    path.write_text(json.dumps(config))
    return config


def test_a_config_json_written_before_the_spec_resumes_evaluates_and_exports(tmp_path, capsys):
    from sedona_runtime.cli.evaluate import main as evaluate_main
    from sedona_runtime.cli.export import main as export_main
    from sedona_runtime.cli.train import main as train_main
    from sedona_runtime.training.greedy import GreedyTrainer
    from sedona_runtime.training.spec import read_spec

    out = tmp_path / "old"
    assert GreedyTrainer(synthetic_cfg(out, steps=4)).run(stop_at=2) == {"stopped_at": 2}
    new = read_spec(out)
    _as_version_1(out)
    old = read_spec(out)
    assert old.version == 1 and old.input is None and old.train.data.batch_size is None
    assert old.input_shape == new.input_shape and old.train == new.train
    assert train_main(["--resume", "--out", str(out), "--plain"]) == 0  # the resume rules pass an older format
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    capsys.readouterr()
    assert evaluate_main([str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] > 0
    assert export_main([str(out), "--out", str(tmp_path / "m.pt"), "--format", "state_dict"]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())  # the normalization read from the run's data
    assert (meta["mean"], meta["std"]) == (new.input.mean, new.input.std)
