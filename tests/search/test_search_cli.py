"""`python -m sedona_runtime.search` end to end: decoupling files the trainer runs; one clear line for bad input."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sedona_runtime.cli.search import main
from sedona_runtime.cli.train import main as train_main
from sedona_runtime.decoupling import load_decoupling, validate_for

TINY = ["--arch", "small", "--width", "0.25", "--dataset", "digits", "--image-size", "8", "--batch-size", "8",
        "--head-width", "8", "--head-pool", "aux1,aux4", "--pretrain-steps", "2", "--eval-every", "1",
        "--eval-batches", "1", "--memory-size", "2", "--search-steps", "2", "--inner-steps", "2",
        "--device", "cpu", "--plain"]


def _fails(capsys, argv: list[str], *words: str) -> None:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_search_writes_decouplings_the_trainer_runs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "search"
    assert main(TINY + ["--blocks", "2,4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "s per outer step" in printed and "peak RSS" in printed
    command = next(line for line in printed.splitlines() if line.startswith("train it: ")).split(": ", 1)[1]
    for k in (2, 4):
        dec = load_decoupling(str(out / f"small_k{k}.json"))
        validate_for(dec, "small", 6)
        assert dec.K == k and dec.head_pool == ["aux1", "aux4"] and len(dec.alpha) == 5 and len(dec.beta[0]) == 2
        assert all(b.head in ("aux1", "aux4") for b in dec.blocks[:-1])
    config = json.loads((out / "config.json").read_text())
    assert config["inner_steps"] == 2 and config["data"]["val_fraction"] == 0.4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["pretrain", "pretrain", "search", "search"]
    assert (out / "alpha_beta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The printed command trains the K = 4 decoupling on the searched network and data, unchanged.
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "sedona_runtime.train"]
    assert argv[argv.index("--decoupling") + 1] == str(out / "small_k4.json")
    run = tmp_path / "train"
    assert train_main(argv[3:] + ["--steps", "2", "--batch-size", "8", "--device", "cpu", "--eval-interval", "0",
                                  "--plain", "--out", str(run)]) == 0
    assert json.loads((run / "summary.json").read_text())["K"] == 4
    # A finished search is not silently overwritten.
    _fails(capsys, TINY + ["--out", str(out)], "already holds a run", "--overwrite")


@pytest.mark.parametrize("extra,words", [
    (["--blocks", "2,x"], ["--blocks"]),
    (["--blocks", "1"], ["blocks", ">= 2"]),
    (["--blocks", "8,16"], ["blocks", "6 layers", "K = 8, 16"]),
    (["--blocks", "2,16"], ["blocks", "6 layers", "K = 16"]),  # issue 13, item 11: refused at start
    (["--val-batch-size", "0"], ["val_batch_size"]),
    (["--inner-steps", "0"], ["inner_steps"]),
    (["--arch", "nonet"], ["nonet"]),
    (["--head-pool", "aux1,nohead"], ["nohead"]),
    (["--head-pool", "aux1,predsim"], ["predsim", "own local loss"]),
    (["--val-fraction", "0"], ["val_fraction"]),
    (["--device", "cuda:7"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"], ["device"]),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, capsys, extra: list[str], words: list[str]) -> None:
    _fails(capsys, TINY + ["--out", str(tmp_path / "o")] + extra, *words)
    if "--blocks" in extra or "--val-batch-size" in extra:
        assert not (tmp_path / "o").exists()  # nothing created for a refused search


def test_quick_preset_and_its_overrides() -> None:
    from sedona_runtime.cli.search import _parser, build_config

    cfg = build_config(_parser().parse_args(["--preset", "quick"]))
    assert (cfg.model.arch, cfg.data.dataset, cfg.inner_steps) == ("small", "digits", 5)
    assert cfg.pretrain_steps + cfg.search_steps < 1000 and cfg.head_width == 64
    cfg = build_config(_parser().parse_args(["--preset", "quick", "--search-steps", "7"]))
    assert cfg.search_steps == 7 and cfg.model.arch == "small"  # options override the preset


def test_stopped_search_exports_its_decouplings(tmp_path: Path, capsys) -> None:
    from sedona_runtime.search.runner import SearchRunner
    from sedona_runtime.cli.search import _parser, build_config

    out = tmp_path / "s"
    cfg = build_config(_parser().parse_args(TINY + ["--blocks", "2,4", "--search-steps", "3", "--out", str(out)]))
    SearchRunner(cfg, out).run(stop_after=3)  # two pretraining steps and one outer step
    capsys.readouterr()
    assert main(["--export", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "after 1 of 3 outer steps" in printed and "train it: python -m sedona_runtime.train" in printed
    assert load_decoupling(str(out / "small_k4.json")).K == 4
    _fails(capsys, ["--export", "--out", str(tmp_path / "none")], "no search checkpoint")


def test_resume_without_a_search_and_bad_config(tmp_path: Path, capsys) -> None:
    _fails(capsys, ["--resume", "--out", str(tmp_path / "none")], "cannot")
    bad = tmp_path / "c.json"
    bad.write_text('{"inner_steps": 2, "typo": 1}')
    _fails(capsys, ["--config", str(bad), "--out", str(tmp_path / "o")], "typo")


def test_module_shim_runs() -> None:
    res = subprocess.run([sys.executable, "-m", "sedona_runtime.search", "--inner-steps", "0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: inner_steps"), res.stderr


def test_search_on_cifar_format_data(tmp_path: Path) -> None:
    import importlib.util

    # The CIFAR-format writer the data tests use (test folders are not packages, so load it by path):
    # if it moves, this test fails rather than skipping.
    helpers = Path(__file__).resolve().parents[1] / "data" / "data_helpers.py"
    spec = importlib.util.spec_from_file_location("search_cifar_helpers", helpers)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_cifar(tmp_path / "data", per_batch=6)  # 30 training images in the real pickle layout
    out = tmp_path / "search"
    argv = list(TINY)
    del argv[argv.index("--image-size"):argv.index("--image-size") + 2]  # CIFAR images are 32x32
    argv[argv.index("digits")] = "cifar10"
    assert main(argv + ["--data-dir", str(tmp_path / "data"), "--search-steps", "1", "--inner-steps", "1",
                        "--blocks", "2", "--out", str(out)]) == 0
    dec = load_decoupling(str(out / "small_k2.json"))
    assert dec.K == 2 and "cifar10" in dec.source


def test_ctrl_c_says_at_once_that_it_stops_after_the_step_then_stops_with_a_checkpoint(tmp_path: Path) -> None:
    # Issue 13, item 11, as a user sees it: a real process, a real SIGINT.
    import os
    import signal
    import time

    out = tmp_path / "s"
    argv = [sys.executable, "-m", "sedona_runtime.search"] + TINY + ["--pretrain-steps", "100000", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "searching: ..." once the loop runs
        while "searching" not in line and time.monotonic() < deadline and line:
            line = proc.stdout.readline()
        assert "searching" in line, line
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, stderr
    assert "Ctrl-C: the search stops after the current step" in stdout
    assert "stopped after step" in stdout and "Traceback" not in stderr
    assert "--resume --out" in stderr and "--export --out" in stderr
    assert (out / "checkpoints" / "last.pt").is_file()


def test_a_presets_input_size_is_for_its_own_data_set(tmp_path):
    """--preset quick sets 16x16 digits; with --dataset cifar10 the images keep CIFAR's 32x32 (the preset's
    size was refused as if the user had asked for it), unless --image-size says otherwise."""
    from sedona_runtime.cli.search import _parser, build_config

    def cfg(*extra):
        return build_config(_parser().parse_args(["--preset", "quick", *extra, "--out", str(tmp_path / "s")]))

    assert cfg().data.image_size == 16
    assert cfg("--dataset", "cifar10", "--data-dir", str(tmp_path)).data.image_size is None
    assert cfg("--dataset", "cifar10", "--data-dir", str(tmp_path), "--image-size", "32").data.image_size == 32
