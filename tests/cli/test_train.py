"""`python -m sedona_runtime.train`: a tiny digits run, and one clear line + exit 2 for every bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sedona_runtime.cli.train import main

# 8x8 digits, a quarter-width small model, 3 steps: seconds on a CPU.
TINY = ["--dataset", "digits", "--image-size", "8", "--width", "0.25", "--steps", "3", "--batch-size", "16",
        "--device", "cpu", "--eval-interval", "0", "--plain"]


def _fails(capsys, argv: list[str], *words: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


def test_trains_and_prints_test_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TINY + ["--decoupling", "dgl:2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "aux ensemble" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["K"] == 2 and summary["steps"] == 3
    # --resume of a finished run says so (exit 0: there is nothing left to do) and touches no file.
    before = _snapshot(out)
    assert main(["--resume", "--out", str(out), "--plain"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"run {out} has already finished (3 steps, results in {out / 'summary.json'}); nothing "
                            "to resume, every file is left as it is (to train it again pass --overwrite, or choose "
                            "another --out)\n") and captured.out == ""
    assert _snapshot(out) == before
    _fails(capsys, TINY + ["--decoupling", "dgl:2", "--out", str(out)], "already holds a run, which has finished", "--overwrite")
    assert _snapshot(out) == before


def _snapshot(root) -> dict:
    """Every file under `root` with its bytes and modification time."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_shipped_decoupling_of_another_arch_needs_retarget(tmp_path, capsys):
    _fails(capsys, TINY + ["--decoupling", "vgg19_k4", "--out", str(tmp_path / "a")], "vgg19", "--retarget")
    assert main(TINY + ["--decoupling", "vgg19_k4", "--retarget", "--out", str(tmp_path / "b")]) == 0
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["decoupling"]["arch"] == "small" and len(saved["decoupling"]["blocks"]) == 4
    assert "retargeted from vgg19" in saved["decoupling"]["source"]


def test_sedona_k_on_an_unsearched_arch_needs_retarget(tmp_path, capsys):
    _fails(capsys, TINY + ["--decoupling", "sedona:2", "--out", str(tmp_path / "a")], "sedona:2", "--retarget")
    assert main(TINY + ["--decoupling", "sedona:2", "--retarget", "--out", str(tmp_path / "b")]) == 0
    dec = json.loads((tmp_path / "b" / "config.json").read_text())["decoupling"]
    assert len(dec["blocks"]) == 2 and dec["blocks"][0]["head"] in ("aux1", "aux2", "aux3", "aux4")


@pytest.mark.parametrize("extra,words", [
    (["--decoupling", "dgl:9"], ["dgl:9", "K must be"]),
    (["--decoupling", "nosuch.json"], ["nosuch.json"]),
    (["--steps", "many"], ["--steps"]),
    (["--steps", "0"], ["steps"]),
    (["--arch", "nonet"], ["nonet"]),
    (["--batch-size", "1"], ["batch size must be >= 2 (BatchNorm cannot train on a single sample), got 1"]),
    (["--decoupling", "dgl:two"], ["decoupling 'dgl:two': K must be a whole number of blocks (e.g. dgl:4), got 'two'"]),
    (["--decoupling", "sedona:x", "--retarget"], ["K must be a whole number of blocks (e.g. sedona:4), got 'x'"]),
    # (the directory is recorded absolute: resolved once, it means the same from anywhere)
    (["--data-dir", "."], [f"--data-dir {Path.cwd()} was given, but data set 'digits' reads no directory", "--dataset"]),
])
def test_bad_options(tmp_path, capsys, extra, words):
    _fails(capsys, TINY + ["--out", str(tmp_path / "run")] + extra, *words)
    assert not (tmp_path / "run").exists()


def test_malformed_decoupling_file(tmp_path, capsys):
    bad = tmp_path / "dec.json"
    bad.write_text("{not json")
    _fails(capsys, TINY + ["--decoupling", str(bad), "--out", str(tmp_path / "run")], str(bad), "invalid JSON")


def test_missing_and_malformed_data_dirs(tmp_path, capsys):
    _fails(capsys, TINY + ["--dataset", "cifar10", "--image-size", "32", "--data-dir", str(tmp_path / "none"),
                           "--out", str(tmp_path / "a")], str(tmp_path / "none"))
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(capsys, TINY + ["--dataset", "imagefolder", "--data-dir", str(empty), "--out", str(tmp_path / "b")],
           str(empty))
    _fails(capsys, TINY + ["--dataset", "cifar10", "--out", str(tmp_path / "c")], "--data-dir")


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    _fails(capsys, TINY + ["--out", str(blocker / "run")], str(blocker))
    _fails(capsys, ["--resume", "--out", str(tmp_path / "never")], "config.json")


def test_diverging_run_names_block_and_step_and_keeps_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails(capsys, TINY + ["--decoupling", "dgl:2", "--lr", "1e30", "--final-lr", "1e30",
                                 "--checkpoint-interval", "1", "--out", str(out)],
                 "non-finite", "block", "at step")
    assert not (out / "summary.json").exists()
    if "kept" in err:  # a checkpoint from before the divergence is loadable and finite
        ck = torch.load(out / "checkpoints/last.pt", weights_only=False)
        assert f"(step {ck['step']}) kept" in err
        assert all(torch.isfinite(t).all() for b in ck["blocks"] for t in b["block"].values() if t.is_floating_point())


def test_speed_settings_reach_the_config_and_may_change_on_resume(tmp_path):
    from sedona_runtime.cli.train import _parser, build_config
    from sedona_runtime.training.resume_rules import check_resume
    from sedona_runtime.utils.config import to_dict

    cfg = build_config(_parser().parse_args([*TINY, "--channels-last", "--compile", "--no-cudnn-benchmark",
                                             "--out", str(tmp_path / "r")]))
    assert (cfg.channels_last, cfg.compile, cfg.cudnn_benchmark) == (True, True, False)
    plain = build_config(_parser().parse_args([*TINY, "--out", str(tmp_path / "r")]))
    assert (plain.channels_last, plain.compile, plain.cudnn_benchmark) == (False, False, True)
    saved = to_dict(plain)
    for key in ("channels_last", "compile", "cudnn_benchmark"):
        saved.pop(key)  # a run saved before these settings existed
    check_resume("train", {"train": saved}, {"train": to_dict(cfg)}, str(tmp_path / "r"))  # no error: speed only
