"""The faults a newcomer hit (issue 20), each found again: one clear line instead of a traceback or a silent
wrong result, and recorded paths that mean the same from any directory."""
from __future__ import annotations

import json

import pytest

from sedona_runtime.cli.train import main as train_main

TINY = ["--dataset", "digits", "--image-size", "8", "--width", "0.25", "--steps", "3", "--batch-size", "16",
        "--device", "cpu", "--eval-interval", "0", "--plain"]


def _one_line(capsys, rc: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


@pytest.fixture
def single_run(tmp_path):
    """A finished 3-step single-process run."""
    out = tmp_path / "single"
    assert train_main(TINY + ["--decoupling", "dgl:2", "--out", str(out)]) == 0
    return out


# -- fault 4: VGG-19 on the embedded data ------------------------------------------------------------
def test_vgg19_on_the_embedded_digits_gets_an_input_its_whole_network_accepts():
    from sedona_runtime.training.config import TrainConfig, resolve_defaults

    cfg = TrainConfig(decoupling="vgg19_k2")
    cfg.model.arch = "vgg19"
    # Its fifth pooling is in the classifier: 16x16 passes the layers but not the classifier.
    assert resolve_defaults(cfg).data.image_size == 32


def test_an_input_too_small_for_the_classifier_is_one_line_and_leaves_no_run_directory(tmp_path, capsys):
    out = tmp_path / "vgg"
    rc = train_main(["--arch", "vgg19", "--decoupling", "vgg19_k2", "--image-size", "16", "--steps", "1",
                     "--device", "cpu", "--plain", "--out", str(out)])
    _one_line(capsys, rc, "vgg19", "classifier", "--image-size")
    assert not out.exists()


# -- fault 5: resuming with the other kind of command ------------------------------------------------
def test_pipeline_resume_of_a_single_process_run_names_the_trainer(single_run, capsys):
    from sedona_runtime.cli.greedy import main as greedy_main

    (single_run / "summary.json").unlink()  # a stopped run
    _one_line(capsys, greedy_main(["--resume", "--out", str(single_run)]), "single-process run",
              f"python -m sedona_runtime.train --resume --out {single_run}")


def _as_pipeline_run(run, tmp_path):
    """`run`'s directory turned into what a stopped pipeline run leaves (its files, no single-process ones)."""
    config = json.loads((run / "config.json").read_text())
    config["pipeline"] = {"blocks": 2, "transport": "rpc"}
    (run / "config.json").write_text(json.dumps(config))
    ck = run / "checkpoints"
    for name in ("last.pt", "best.pt"):
        (ck / name).unlink(missing_ok=True)
    (run / "summary.json").unlink(missing_ok=True)
    (ck / "pipeline.json").write_text(json.dumps({"step": 3, "blocks": 2}))
    (ck / "best.json").write_text(json.dumps({"step": 3}))
    for sub in ("blocks/step_00000003", "eval_weights/step_00000003"):
        (ck / sub).mkdir(parents=True)
        (ck / sub / "block1.pt").write_bytes(b"x")


def test_trainer_resume_of_a_pipeline_run_names_the_pipeline(single_run, tmp_path, capsys):
    _as_pipeline_run(single_run, tmp_path)
    _one_line(capsys, train_main(["--resume", "--out", str(single_run), "--plain"]), "is a pipeline run",
              f"launch/greedy.py --resume --out {single_run}")


# -- fault 7: --overwrite of a former pipeline run by the trainer --------------------------------------
def test_trainer_overwrite_of_a_pipeline_run_removes_its_files(single_run, tmp_path, capsys):
    _as_pipeline_run(single_run, tmp_path)
    assert train_main(TINY + ["--decoupling", "dgl:2", "--out", str(single_run), "--overwrite"]) == 0
    ck = single_run / "checkpoints"
    assert not any((ck / n).exists() for n in ("pipeline.json", "best.json", "blocks", "eval_weights"))
    assert (ck / "last.pt").is_file()


# -- fault 2: relative paths, recorded absolute -------------------------------------------------------
NETS = '''from torch import nn


def build(num_classes):
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
                         nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
'''


def test_relative_paths_are_recorded_absolute_and_work_from_another_directory(tmp_path, monkeypatch, capsys):
    from sedona_runtime.cli.evaluate import main as evaluate_main

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "nets").mkdir(parents=True)
    elsewhere.mkdir()
    (project / "nets" / "issue20_relative_nets.py").write_text(NETS)
    monkeypatch.chdir(project)
    tiny = [a for a in TINY if a not in ("--width", "0.25")]  # a user's net is taken as it is
    assert train_main(tiny + ["--model", "nets/issue20_relative_nets.py:build", "--decoupling", "dgl:2",
                              "--out", "runs/rel"]) == 0
    run = project / "runs" / "rel"
    train = json.loads((run / "config.json").read_text())["train"]
    assert train["model"]["arch"] == f"{project / 'nets' / 'issue20_relative_nets.py'}:build"
    assert train["out_dir"] == str(run)
    capsys.readouterr()
    monkeypatch.chdir(elsewhere)  # evaluate (and resume, export) from another directory rebuild the same net
    assert evaluate_main([str(run), "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["samples"] > 0


def test_a_relative_data_dir_is_recorded_absolute(tmp_path, monkeypatch):
    from sedona_runtime.cli.train import _parser, build_config
    from sedona_runtime.training.config import resolve_defaults

    monkeypatch.chdir(tmp_path)
    # The resolver (its first stage) makes the recorded paths absolute, for the trainer and the pipeline alike.
    cfg = resolve_defaults(build_config(_parser().parse_args(["--dataset", "cifar10", "--data-dir", "data/cifar",
                                                              "--out", "r"])))
    assert cfg.data.data_dir == str(tmp_path / "data" / "cifar") and cfg.out_dir == str(tmp_path / "r")


# -- faults 7 and 8: threads ------------------------------------------------------------------------------
def test_the_trainer_takes_threads_and_warns_once_when_they_exceed_the_cores(tmp_path, capsys, monkeypatch):
    import torch

    from sedona_runtime.cli import _common

    monkeypatch.setattr(_common, "usable_cores", lambda: 1)
    threads = torch.get_num_threads()
    try:
        assert train_main(TINY + ["--threads", "2", "--decoupling", "dgl:2", "--out", str(tmp_path / "t")]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert err.count("warning: --threads 2 is more than the 1 core here") == 1, err
    assert _common.threads_warning(2, processes=3).startswith("warning: --threads 2 in each of 3 processes")
    assert _common.threads_warning(0) is None and _common.threads_warning(1) is None


# -- fault 7: class names ---------------------------------------------------------------------------------
def _tree(root, classes):
    from PIL import Image

    for split, n in (("train", 6), ("val", 2)):
        for c, name in enumerate(classes):
            for i in range(n):
                (root / split / name).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (120 * c, 20 * i, 60)).save(root / split / name / f"{i}.png")


def test_class_names_are_recorded_and_evaluate_refuses_other_classes(tmp_path, capsys):
    from sedona_runtime.cli.evaluate import main as evaluate_main

    _tree(tmp_path / "pets", ["cat", "dog"])
    _tree(tmp_path / "bugs", ["ant", "bee"])  # as many classes, other names: used to be scored silently
    run = tmp_path / "run"
    args = ["--dataset", "imagefolder", "--data-dir", str(tmp_path / "pets"), "--image-size", "8", "--width", "0.25",
            "--steps", "2", "--batch-size", "4", "--eval-interval", "0", "--device", "cpu", "--plain", "--workers", "0"]
    assert train_main(args + ["--decoupling", "dgl:2", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["classes"] == ["cat", "dog"]
    capsys.readouterr()
    assert evaluate_main([str(run), "--json"]) == 0
    capsys.readouterr()
    _one_line(capsys, evaluate_main([str(run), "--data-dir", str(tmp_path / "bugs")]),
              "not the ones", "it lacks cat, dog", "it has ant, bee")


# -- fault 7: --help states the defaults; --val-fraction exists where the README says --------------------------
def _helps(parser) -> dict[str, str]:
    return {a.option_strings[-1]: a.help or "" for a in parser._actions if a.option_strings}


def test_help_states_the_defaults_of_train_and_the_pipeline():
    from sedona_runtime.cli import greedy, train

    for parser in (train._parser(), greedy._parser()):
        helps = _helps(parser)
        for option in ("--steps", "--batch-size", "--lr", "--final-lr", "--weight-decay", "--optimizer",
                       "--label-smoothing", "--eval-interval", "--checkpoint-interval", "--seed", "--val-fraction",
                       "--threads", "--arch", "--decoupling", "--out", "--image-size", "--width", "--workers"):
            assert "default" in helps[option] or "required" in helps[option], (parser.prog, option, helps[option])
    assert "--val-fraction" in _helps(train._parser())


def test_val_fraction_reaches_the_config(tmp_path):
    from sedona_runtime.cli.train import _parser, build_config

    cfg = build_config(_parser().parse_args(["--val-fraction", "0.25", "--out", str(tmp_path / "r")]))
    assert cfg.data.val_fraction == 0.25


def test_speedup_help_states_every_default(capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "speedup.py"
    spec = importlib.util.spec_from_file_location("issue20_speedup", script)
    speedup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speedup)  # in this process: torch is already imported
    with pytest.raises(SystemExit):
        speedup.parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    import re

    for option in ("--arch", "--width", "--image-size", "--batch-size", "--blocks", "--warmup", "--steps",
                   "--repeats", "--queue-depth", "--transport", "--device", "--devices", "--peers",
                   "--microbatches", "--out"):
        parts = re.split(rf"{option}(?![\w-])", text)  # the option itself, not a longer one it begins
        assert len(parts) >= 3 and parts[2].split("--", 1)[0].count("(default:") == 1, option
