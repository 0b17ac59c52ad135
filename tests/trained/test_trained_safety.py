"""A run directory from elsewhere runs no code under evaluate/export (issue 20, fault 1); export never writes a
network without its normalization (fault 2) and says when the run is unfinished (fault 7); a network that
torch.export cannot trace is one line naming the formats that work."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from torch import nn

from sedona_runtime.cli.evaluate import main as evaluate_main
from sedona_runtime.cli.export import main as export_main


class Payload:
    """Unpickling it calls os.makedirs(marker): what a malicious best.pt could do with any function."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_pickle_payload_in_best_pt_is_refused_not_run(user_run, tmp_path, capsys):
    run = tmp_path / "downloaded"
    shutil.copytree(user_run, run)
    good = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    marker = tmp_path / "code-ran"
    torch.save({**good, "extra": Payload(str(marker))}, run / "checkpoints" / "best.pt")
    assert evaluate_main([str(run)]) == 2
    assert "best-weights file" in (err := _one_line(capsys)) and "not loaded (that could run code)" in err
    for fmt in ("pt2", "module"):
        assert export_main([str(run), "--out", str(tmp_path / "m.pt"), "--format", fmt]) == 2
        assert "not loaded (that could run code)" in _one_line(capsys)
    assert not marker.exists() and not (tmp_path / "m.pt").exists()


def test_export_of_an_unfinished_run_says_which_steps_weights_it_wrote(user_run, tmp_path, capsys):
    run = tmp_path / "stopped"
    shutil.copytree(user_run, run)
    (run / "summary.json").unlink()  # as a stopped (Ctrl-C) or still running run leaves it
    step = json.loads((user_run / "summary.json").read_text())["best_val_step"]
    assert export_main([str(run), "--out", str(tmp_path / "m.pt2")]) == 0
    out = capsys.readouterr().out
    assert f"not finished (no summary.json): exported the best weights of step {step} of 4" in out, out
    meta = json.loads((tmp_path / "m.json").read_text())
    assert (meta["finished"], meta["step"], meta["weights"]) == (False, step, "best")


def test_export_carries_the_recorded_normalization_and_refuses_an_old_run_whose_data_is_gone(user_run, tmp_path,
                                                                                             capsys):
    """The run's spec records its input normalization: a run whose data is gone still exports it. A run written
    before the spec (config.json version 1: no input section) reads it from its data and is refused, one
    line, when that cannot be loaded: never a network without its normalization (fault 2)."""
    from sedona_runtime.trained.export_info import input_info
    from sedona_runtime.trained.load import load_run

    trained = load_run(user_run)
    assert input_info(trained) == input_info(trained, trained.cfg.data)  # the recorded one is the data's
    run = tmp_path / "moved"
    shutil.copytree(user_run, run)
    config = json.loads((run / "config.json").read_text())
    config["train"]["data"]["dataset"] = "byo_user_pkg.data:gone"  # data that cannot be loaded any more
    (run / "config.json").write_text(json.dumps(config))
    assert export_main([str(run), "--out", str(tmp_path / "m.pt"), "--format", "state_dict"]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    assert (meta["mean"], meta["std"], meta["scale"]) == (config["input"]["mean"], config["input"]["std"], 255.0)
    capsys.readouterr()
    for key in ("spec_version", "input"):  # as written before the spec
        del config[key]
    (run / "config.json").write_text(json.dumps(config))
    assert export_main([str(run), "--out", str(tmp_path / "old.pt2")]) == 2
    err = _one_line(capsys)
    assert "input normalization is read from the training data" in err and "--data-dir" in err, err
    assert not (tmp_path / "old.pt2").exists() and not (tmp_path / "old.json").exists()


class DataDependent(nn.Module):
    """A layer whose control flow depends on the values: torch.export cannot trace it."""

    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_a_network_torch_export_cannot_trace_is_one_line_naming_the_other_formats():
    from sedona_runtime.models import to_layered
    from sedona_runtime.models.exported import ExportedNet
    from sedona_runtime.trained.program import NormalizedNet, export_program
    from sedona_runtime.utils.errors import SedonaError

    layered = to_layered(nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), DataDependent()), nn.Flatten(),
                                       nn.Linear(4 * 6 * 6, 2)))
    wrapped = NormalizedNet(ExportedNet(layered).eval(), [0.5] * 3, [0.2] * 3, 255.0, torch.float32)
    with pytest.raises(SedonaError) as info:
        export_program(wrapped, torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "my_pkg.nets:build")
    text = str(info.value)
    assert len(text.splitlines()) == 1 and "torch.export cannot trace my_pkg.nets:build" in text
    assert "--format state_dict" in text and "--format module" in text
