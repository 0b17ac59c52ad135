"""`sedona:K --retarget` trains in the pipeline exactly as in the single-process trainer: every block builds
its network with training.build.build_network (the blocks used to resolve the decoupling another way and
failed at block 2 with "no searched decoupling shipped for arch 'small'")."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from pipeline_helpers import assert_same_weights, run_to_end

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(150)]

STEPS = 4
ARGS = ["--blocks", "2", "--decoupling", "sedona:2", "--retarget", "--arch", "small", "--width", "0.25",
        "--image-size", "8", "--batch-size", "16", "--steps", str(STEPS), "--eval-interval", "0",
        "--checkpoint-interval", "0", "--threads", "1", "--plain", "--timeout", "60", "--devices", "cpu"]


def test_retargeted_sedona_decoupling_trains_in_the_pipeline_as_in_one_process(tmp_path):
    from sedona_runtime.cli.greedy import _parser, build_config
    from sedona_runtime.training.greedy import train

    pipe, single = tmp_path / "pipe", tmp_path / "single"
    out = run_to_end([*ARGS, "--out", str(pipe)])
    assert "retargeted" in out or "test accuracy" in out
    cfg = dataclasses.replace(build_config(_parser().parse_args([*ARGS, "--out", str(single)])).train, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the blocks' one thread: bit-reproducible CPU kernels
    try:
        ref = train(cfg)
    finally:
        torch.set_num_threads(threads)
    got = json.loads((pipe / "summary.json").read_text())
    assert got["decoupling"] == ref["decoupling"]
    assert json.loads((pipe / "config.json").read_text())["decoupling"] == \
        json.loads((single / "config.json").read_text())["decoupling"]
    assert got["test"] == ref["test"]  # bit-equal training: the same test errors, every head
    want = [b["block"] for b in torch.load(single / "checkpoints" / "last.pt", weights_only=False)["blocks"]]
    blocks = pipe / "checkpoints" / "blocks" / f"step_{STEPS:08d}"
    assert_same_weights([torch.load(blocks / f"block{i}.pt", weights_only=False)["blocks"][0]["block"]
                         for i in (1, 2)], want)
