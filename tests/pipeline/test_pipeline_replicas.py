"""K = 2 blocks x R = 2 replicas computes exactly what the single-process sharded reference computes."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from pipeline_helpers import assert_same_weights, run_to_end

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(200)]

STEPS, CKPT = 12, 6
# The pipeline tests' tiny run (pipeline_helpers.RUN_ARGS) at K = 2 with 2 replicas: 5 processes.
ARGS = ["--blocks", "2", "--replicas", "2", "--decoupling", "dgl:2", "--arch", "small", "--width", "0.5",
        "--dataset", "digits", "--image-size", "16", "--batch-size", "32", "--steps", str(STEPS),
        "--eval-interval", "6", "--checkpoint-interval", str(CKPT), "--threads", "1", "--plain", "--timeout", "60",
        "--devices", "cpu"]


@pytest.fixture(scope="module")
def sharded_reference(tmp_path_factory):
    """The single-process trainer on 2 shards per batch (training/sharded.py), same config as the pipeline's."""
    from sedona_runtime.cli.greedy import _parser, build_config
    from sedona_runtime.training.greedy import train

    out = tmp_path_factory.mktemp("sharded") / "single"
    pcfg = build_config(_parser().parse_args([*ARGS, "--out", str(out)]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the replicas' kernels, bit for bit
    try:
        train(dataclasses.replace(pcfg.train, device="cpu"), shards=2)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def replica_runs(tmp_path_factory):
    """`get(transport)`: the K = 2 x R = 2 run directory, run once per transport for the module."""
    cache: dict = {}

    def get(transport: str):
        if transport not in cache:
            run_dir = tmp_path_factory.mktemp(f"replicas_{transport}") / "run"
            # rows on rpc, blocks on p2p: both rank layouts compute the same run
            placement = "rows" if transport == "rpc" else "blocks"
            out = run_to_end([*ARGS, "--transport", transport, "--replica-placement", placement, "--out", str(run_dir)],
                             timeout=170)
            cache[transport] = (run_dir, out)
        return cache[transport]

    return get


def block_files(run_dir, step: int) -> list[dict]:
    """The committed checkpoint's block weights (written by replica 0 of each block)."""
    folder = run_dir / "checkpoints" / "blocks" / f"step_{step:08d}"
    return [torch.load(folder / f"block{i}.pt", map_location="cpu", weights_only=False)["blocks"][0]["block"]
            for i in (1, 2)]


def _val_records(run_dir) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "val_top1_error" in r]


def test_replicas_equal_the_sharded_reference(sharded_reference, replica_runs, transport):
    """Bitwise (R = 2 on CPU, one thread: g/2 is exact and a two-term sum has one order; training/sharded.py)."""
    run_dir, out = replica_runs(transport[1])
    assert "2 blocks x 2 replicas (4 processes)" in out
    ref = torch.load(sharded_reference / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert_same_weights(block_files(run_dir, STEPS), [b["block"] for b in ref["blocks"]])
    # The optimizer state (momentum buffers) too: replica 0's, the average's.
    got = torch.load(run_dir / "checkpoints" / "blocks" / f"step_{STEPS:08d}" / "block1.pt", map_location="cpu",
                     weights_only=False)["blocks"][0]["optimizer"]["state"]
    want = ref["blocks"][0]["optimizer"]["state"]
    assert got.keys() == want.keys() and all(torch.equal(got[k]["momentum_buffer"], want[k]["momentum_buffer"])
                                             for k in want)
    # Evaluation runs down replica row 0 on whole batches: every figure equals the reference's.
    summary = json.loads((run_dir / "summary.json").read_text())
    want_summary = json.loads((sharded_reference / "summary.json").read_text())
    assert summary["test"] == want_summary["test"] and summary["val"] == want_summary["val"]
    assert (summary["best_val_error"], summary["best_val_step"]) == (want_summary["best_val_error"],
                                                                     want_summary["best_val_step"])
    assert _val_records(run_dir) == _val_records(sharded_reference) and len(_val_records(run_dir)) == 2
    assert summary["pipeline"]["replicas"] == 2 and summary["pipeline"]["world_size"] == 5
    from sedona_runtime.trained.load import block_states

    best, step, err, _ = block_states(run_dir, "best")
    ref_best, ref_step, ref_err, _ = block_states(sharded_reference, "best")
    assert (step, err) == (ref_step, ref_err)
    assert_same_weights(best, ref_best)


def test_sharded_reference_is_not_the_plain_trainer(sharded_reference, tmp_path):
    """The comparison above has teeth: BatchNorm per shard changes the weights (R = 2 is not R = 1)."""
    from sedona_runtime.cli.greedy import _parser, build_config
    from sedona_runtime.training.greedy import train

    pcfg = build_config(_parser().parse_args([*ARGS, "--out", str(tmp_path / "plain"), "--steps", "2"]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(dataclasses.replace(pcfg.train, device="cpu"))
        train(dataclasses.replace(pcfg.train, device="cpu", out_dir=str(tmp_path / "two")), shards=2)
    finally:
        torch.set_num_threads(threads)
    a = torch.load(tmp_path / "plain" / "checkpoints" / "last.pt", weights_only=False)["blocks"][0]["block"]
    b = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=False)["blocks"][0]["block"]
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_a_batch_that_does_not_split_is_refused(tmp_path, capsys):
    """One line, exit 2, before any process starts or the run directory is made."""
    from sedona_runtime.cli.greedy import main

    out = tmp_path / "run"
    assert main([*ARGS, "--replicas", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: --batch-size 32 does not split into --replicas 3 equal shards: use a batch size "
                           "that is a multiple of 3")
    assert not out.exists()


@pytest.mark.parametrize("kill", [("p2p", 2, True), ("rpc", 3, False)], ids=["p2p", "rpc"])
def test_a_killed_replica_is_named_and_resume_matches(tmp_path, sharded_reference, kill):
    """SIGKILL one replica mid-run: the run names it and stops (nothing left running) in bounded time, its
    replica partner leaves its all-reduce; --resume continues from the last commit to the same weights.

    On p2p block 1's replica 1 (an activation sender) dies and the run is resumed; on rpc block 2's replica 1
    (an rpc receiver) dies, and the resume, whose code does not depend on the transport, is not run again
    (it would double this test's time)."""
    import time

    import psutil

    from pipeline_helpers import committed_step, kill_session, start, wait_gone

    transport, child, resume = kill
    run_dir = tmp_path / "run"
    # Checkpoints every 2 steps (the weights do not depend on it): the first commit comes with 10 steps to go,
    # so the kill lands mid-run (a checkpoint is committed as soon as every block saved it, the last one too).
    proc = start([*ARGS, "--transport", transport, "--out", str(run_dir), "--queue-depth", "1", "--window", "1",
                  "--checkpoint-interval", "2"])
    try:
        deadline = time.monotonic() + 120
        while committed_step(run_dir) is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children()
        assert len(children) == 4
        victim = children[child]  # rows: rank 1 + r*K + (k-1) is block k replica r; child i is rank i + 1
        block, replica = child % 2 + 1, child // 2
        victim.kill()
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1 and time.monotonic() - t0 < 20, err[-3000:]
        assert f"error: block{block} replica {replica} (pid {victim.pid}) was killed by SIGKILL" in err, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert not wait_gone(proc.pid, 10), "processes left behind"
    finally:
        kill_session(proc)
    last = committed_step(run_dir)
    assert last is not None and last % 2 == 0 and last < STEPS
    assert f"checkpoint of step {last} kept" in err
    if not resume:
        return
    out = run_to_end(["--out", str(run_dir), "--resume", "--plain"], timeout=170)  # R = 2 from its config.json
    assert f"resuming at {last}" in out
    ref = torch.load(sharded_reference / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert_same_weights(block_files(run_dir, STEPS), [b["block"] for b in ref["blocks"]])


def test_resume_with_replicas_that_do_not_split_the_batch_is_refused(replica_runs, tmp_path, capsys):
    """A changed --replicas is fine while the batch splits (checkpoints are per block); otherwise one line."""
    import shutil

    from sedona_runtime.cli.greedy import main

    run_dir = tmp_path / "run"
    shutil.copytree(replica_runs("rpc")[0], run_dir)
    (run_dir / "summary.json").unlink()  # as if it had stopped after its last commit
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    assert main(["--out", str(run_dir), "--resume", "--replicas", "3"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --batch-size 32 does not split into --replicas 3")
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


def test_two_torchrun_nodes_run_the_replicas(tmp_path, sharded_reference):
    """World size K*R + 1 = 5 over two torchrun "nodes" on loopback: node 0 the coordinator and block 1's two
    replicas (--replica-placement blocks: their all-reduce stays on the node), node 1 block 2's two."""
    from pipeline_helpers import finish_nodes, free_port, start

    run_dir = tmp_path / "run"
    port = free_port()
    common = ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
              "--rdzv-id", "replicas-test", "--max-restarts", "0"]
    args = [*ARGS, "--transport", "rpc", "--replica-placement", "blocks", "--out", str(run_dir)]
    nodes = [start(args, torchrun=[*common, "--nproc-per-node", str(n), "--node-rank", str(rank)])
             for rank, n in ((0, 3), (1, 2))]
    outs = finish_nodes(nodes, timeout=170)
    assert sum("test accuracy" in out for out, _ in outs) == 1
    ref = torch.load(sharded_reference / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert_same_weights(block_files(run_dir, STEPS), [b["block"] for b in ref["blocks"]])


def test_one_block_with_replicas_is_data_parallel_backprop(tmp_path):
    """--blocks 1 --replicas 2 (the benchmark's DDP row) equals backprop on 2 shards per batch, bitwise."""
    from sedona_runtime.cli.greedy import _parser, build_config
    from sedona_runtime.training.greedy import train

    # ARGS without its --blocks/--replicas; the later --decoupling and --steps override the earlier ones
    args = [*ARGS[4:], "--blocks", "1", "--replicas", "2", "--decoupling", "backprop", "--steps", "6",
            "--eval-interval", "3", "--checkpoint-interval", "3"]
    ref_dir = tmp_path / "single"
    pcfg = build_config(_parser().parse_args([*args, "--out", str(ref_dir)]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(dataclasses.replace(pcfg.train, device="cpu"), shards=2)
    finally:
        torch.set_num_threads(threads)
    run_dir = tmp_path / "run"
    run_to_end([*args, "--transport", "rpc", "--out", str(run_dir)], timeout=170)
    ref = torch.load(ref_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    got = torch.load(run_dir / "checkpoints" / "blocks" / f"step_{6:08d}" / "block1.pt", map_location="cpu",
                     weights_only=False)["blocks"][0]["block"]
    assert_same_weights([got], [ref["blocks"][0]["block"]])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test"] == json.loads((ref_dir / "summary.json").read_text())["test"] and summary["K"] == 1
