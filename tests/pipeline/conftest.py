"""Fixtures of the pipeline tests: the single-process reference run every pipelined run must equal."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from pipeline_helpers import RUN_ARGS


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory):
    """The single-process trainer's run directory of the pipeline tests' run (config, metrics, summary, weights).

    The config comes from the pipeline CLI's own option parsing, so both modes train the same config;
    one torch thread makes the CPU kernels bit-reproducible.
    """
    from sedona_runtime.cli.greedy import _parser, build_config
    from sedona_runtime.training.greedy import train

    out = tmp_path_factory.mktemp("reference") / "single"
    pcfg = build_config(_parser().parse_args([*RUN_ARGS, "--out", str(out)]))
    cfg = dataclasses.replace(pcfg.train, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def reference(reference_dir):
    """(the reference run's config.json 'train', its final block weights)."""
    ck = torch.load(reference_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    saved = json.loads((reference_dir / "config.json").read_text())["train"]
    return saved, [b["block"] for b in ck["blocks"]]


@pytest.fixture(params=["rpc", "p2p"])
def transport(request) -> list[str]:
    """Each multi-process test runs on both transports: the options that select one."""
    return ["--transport", request.param]


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory):
    """`get(transport)`: (run directory, stdout) of the pipeline tests' run done once per transport and kept
    for the session. Tests that change the directory work on a copy."""
    from pipeline_helpers import run_to_end

    cache: dict = {}

    def get(transport: str):
        if transport not in cache:
            run_dir = tmp_path_factory.mktemp(f"pipeline_{transport}") / "run"
            cache[transport] = (run_dir, run_to_end([*RUN_ARGS, "--transport", transport, "--out", str(run_dir)]))
        return cache[transport]

    return get
