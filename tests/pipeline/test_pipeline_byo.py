"""A user's network from a module outside the package trains in the pipeline (K = 2): the block processes import
it, and the result equals the single-process trainer's."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from pipeline_helpers import assert_same_weights, run_to_end

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(150)]

STEPS = 6
ARGS = ["--blocks", "2", "--decoupling", "dgl:2", "--model", "byo_user_pkg.nets:build", "--dataset", "digits",
        "--image-size", "8", "--batch-size", "16", "--steps", str(STEPS), "--eval-interval", "3",
        "--checkpoint-interval", "3", "--devices", "cpu", "--threads", "1", "--plain", "--timeout", "60"]


def test_user_network_trains_in_the_pipeline(user_pkg, tmp_path, capsys):
    from sedona_runtime.cli.greedy import _parser, build_config
    from sedona_runtime.training.greedy import train

    run_dir = tmp_path / "pipe"
    # As a user runs it: from the folder holding their package (not the launcher's), no PYTHONPATH entry for it.
    out = run_to_end([*ARGS, "--out", str(run_dir)], cwd=user_pkg)
    assert "test accuracy" in out and "ensemble 1+2" in out  # the per-block table
    saved = json.loads((run_dir / "config.json").read_text())["train"]
    assert saved["model"]["arch"] == "byo_user_pkg.nets:build" and saved["model"]["import_root"] == user_pkg

    # The single-process trainer on the same options computes the same weights, bit for bit.
    pcfg = build_config(_parser().parse_args([*ARGS, "--out", str(tmp_path / "single")]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = train(dataclasses.replace(pcfg.train, device="cpu"))
    finally:
        torch.set_num_threads(threads)
    want = [b["block"] for b in torch.load(tmp_path / "single/checkpoints/last.pt", weights_only=False)["blocks"]]
    got = [torch.load(run_dir / "checkpoints/blocks" / f"step_{STEPS:08d}" / f"block{i}.pt",
                      weights_only=False)["blocks"][0]["block"] for i in (1, 2)]
    assert_same_weights(got, want)
    pipe_summary = json.loads((run_dir / "summary.json").read_text())
    assert pipe_summary["test"]["block_top1_error"] == summary["test"]["block_top1_error"]

    # The pipeline's run directory (per-block checkpoint files) exports and evaluates like the single-process one.
    from sedona_runtime.cli.evaluate import main as evaluate_main
    from sedona_runtime.cli.export import main as export_main
    from sedona_runtime.data import eval_batches

    assert export_main([str(run_dir), "--weights", "last", "--format", "module",
                        "--out", str(tmp_path / "model.pt")]) == 0
    net = torch.load(tmp_path / "model.pt", weights_only=False)
    assert (net.info["step"], net.info["weights"]) == (STEPS, "last")
    from sedona_runtime.training.greedy import build_parts

    test = build_parts(dataclasses.replace(pcfg.train, device="cpu")).bundle.test
    with torch.no_grad():
        misses = sum(int((net(x).argmax(1) != y).sum()) for x, y in eval_batches(test, pcfg.train.eval_batch_size))
    assert 1.0 - misses / len(test) == pipe_summary["test_accuracy"]  # computed as the run computes it
    capsys.readouterr()
    assert evaluate_main([str(run_dir), "--weights", "last", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["block_top1_error"] == pipe_summary["test"]["block_top1_error"]
