"""Two torchrun 'nodes' on loopback (c10d rendezvous) form one pipelined run of K = 3 blocks."""
from __future__ import annotations

import pytest

from pipeline_helpers import RUN_ARGS, STEPS, assert_same_weights, finish_nodes, free_port, pipeline_weights, start

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(150)]


def test_two_torchrun_nodes_form_one_run(tmp_path, reference):
    _, want = reference
    run_dir = tmp_path / "run"
    port = free_port()
    common = ["--nnodes", "2", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "pipeline-test", "--max-restarts", "0"]
    # The p2p transport: its run crosses the nodes on both planes (the RPC agents and the gloo group);
    # the rpc transport's activations ride the same TensorPipe agents this run already joins.
    args = [*RUN_ARGS, "--transport", "p2p", "--out", str(run_dir)]
    nodes = [start(args, torchrun=[*common, "--node-rank", str(rank)]) for rank in (0, 1)]
    outs = finish_nodes(nodes, timeout=120)
    # World size 4 = coordinator + 3 blocks, two processes per "node": one of them printed the result.
    assert sum("test accuracy" in out for out, _ in outs) == 1
    assert_same_weights(pipeline_weights(run_dir, STEPS), want)
