"""`python -m sedona_runtime.search` end to end: decoupling files the trainer runs; one clear line for bad input."""
from __future__ import annotations

import json
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
    assert main(TINY + ["--blocks", "2,4,16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "s per outer step" in printed and "peak RSS" in printed
    for k in (2, 4):
        dec = load_decoupling(str(out / f"small_k{k}.json"))
        validate_for(dec, "small", 6)
        assert dec.K == k and dec.head_pool == ["aux1", "aux4"] and len(dec.alpha) == 5 and len(dec.beta[0]) == 2
        assert all(b.head in ("aux1", "aux4") for b in dec.blocks[:-1])
    assert not (out / "small_k16.json").exists()  # K > L layers is skipped, not an error
    config = json.loads((out / "config.json").read_text())
    assert config["inner_steps"] == 2 and config["data"]["val_fraction"] == 0.4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["pretrain", "pretrain", "search", "search"]
    assert (out / "alpha_beta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The output runs unchanged in the single-process trainer.
    run = tmp_path / "train"
    assert train_main(["--arch", "small", "--width", "0.25", "--dataset", "digits", "--image-size", "8",
                       "--steps", "2", "--batch-size", "8", "--device", "cpu", "--eval-interval", "0", "--plain",
                       "--decoupling", str(out / "small_k4.json"), "--out", str(run)]) == 0
    assert json.loads((run / "summary.json").read_text())["K"] == 4
    # A finished search is not silently overwritten.
    _fails(capsys, TINY + ["--out", str(out)], "already holds a run", "--overwrite")


@pytest.mark.parametrize("extra,words", [
    (["--blocks", "2,x"], ["--blocks"]),
    (["--blocks", "1"], ["blocks", ">= 2"]),
    (["--blocks", "8,16"], ["blocks", "6 layers"]),
    (["--inner-steps", "0"], ["inner_steps"]),
    (["--arch", "nonet"], ["nonet"]),
    (["--head-pool", "aux1,nohead"], ["nohead"]),
    (["--head-pool", "aux1,predsim"], ["predsim", "own local loss"]),
    (["--val-fraction", "0"], ["val_fraction"]),
    (["--device", "cuda:7"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"], ["device"]),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, capsys, extra: list[str], words: list[str]) -> None:
    _fails(capsys, TINY + ["--out", str(tmp_path / "o")] + extra, *words)


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
