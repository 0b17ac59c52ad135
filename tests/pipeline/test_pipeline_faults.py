"""Faults end the whole pipelined run quickly and cleanly; --resume continues from the last commit."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import time

import psutil
import pytest

from sedona_runtime.cli.greedy import main as greedy_main

from pipeline_helpers import (CKPT, RUN_ARGS, STEPS, assert_same_weights, committed_step, kill_session,
                              listening, pipeline_weights, start, wait_gone)

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(170)]


def _wait_commit(proc, run_dir, timeout: float = 90.0) -> int:
    """Block until the run has committed its first checkpoint (and is still training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = committed_step(run_dir)
        if step is not None:
            return step
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    raise AssertionError("no checkpoint was committed in time")


def _blocks(proc) -> list[psutil.Process]:
    """The block processes the coordinator launched (its direct children)."""
    return psutil.Process(proc.pid).children()


def test_killed_block_ends_run_and_resume_matches(tmp_path, reference, transport):
    _, want = reference
    run_dir = tmp_path / "run"
    # A slower queue (depth 1, window 1) keeps the run going long enough to be killed mid-way.
    proc = start([*RUN_ARGS, *transport, "--out", str(run_dir), "--queue-depth", "1", "--window", "1"])
    try:
        step = _wait_commit(proc, run_dir)
        blocks = _blocks(proc)
        assert len(blocks) == 3
        victim = blocks[1]
        victim.kill()  # SIGKILL: no chance to say goodbye
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
        assert proc.returncode == 1, err[-3000:]
        assert elapsed < 15, f"the run took {elapsed:.1f}s to stop"
        assert f"error: block2 (pid {victim.pid}) was killed by SIGKILL" in err, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert not wait_gone(proc.pid, 10), "processes left behind"
    finally:
        kill_session(proc)
    last = committed_step(run_dir)
    assert last is not None and last >= step and last % CKPT == 0 and last < STEPS
    pipeline_weights(run_dir, last)  # every block file of the committed step loads

    # The run's settings (blocks, decoupling, model, data, ...) come from its config.json; the transport
    # may change on resume (it changes nothing computed), and config.json then records the new one.
    other = "p2p" if transport[1] == "rpc" else "rpc"
    proc = start(["--out", str(run_dir), "--resume", "--plain", "--transport", other])
    try:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    finally:
        kill_session(proc)
    assert f"resuming at {last}" in out
    assert json.loads((run_dir / "config.json").read_text())["pipeline"]["transport"] == other
    # Resume equals uninterrupted: the final weights still equal the single-process trainer's.
    assert_same_weights(pipeline_weights(run_dir, STEPS), want)


def test_a_stop_signal_commits_the_last_step_and_stops_every_process(tmp_path, transport, capsys):
    run_dir = tmp_path / "run"
    # Long enough to be still training when the second run and Ctrl-C come (stopped long before the end).
    proc = start([*RUN_ARGS, *transport, "--out", str(run_dir), "--queue-depth", "1", "--window", "1",
                  "--steps", "5000", "--checkpoint-interval", "20"])
    try:
        _wait_commit(proc, run_dir)
        assert len(_blocks(proc)) == 3
        # A run on one machine listens on loopback only: the RPC control plane, its store, the gloo group.
        sockets = listening(proc)
        assert len({pid for pid, _, _ in sockets}) == 4, sockets  # the coordinator and three blocks listen
        assert all(ipaddress.ip_address(ip).is_loopback for _, ip, _ in sockets), sockets
        # The live run owns its directory: a second run, or --overwrite, into it is one clear refusal (the
        # launcher's own entry point, called here: a fresh interpreter would spend most of this test
        # importing torch beside four busy processes).
        assert greedy_main([*RUN_ARGS, "--out", str(run_dir), "--overwrite"]) == 2
        refused = capsys.readouterr().err
        assert refused.startswith("error: ") and "is in use by another run: pid" in refused, refused
        # To every process of the group: Ctrl-C in a terminal; SIGTERM as timeout(1), a scheduler or
        # torchrun sends it (each transport's run takes one of the two).
        sig = signal.SIGINT if "rpc" in transport else signal.SIGTERM
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + sig, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert not wait_gone(proc.pid, 10), "processes left behind"
    finally:
        kill_session(proc)
    # The run stopped at a step boundary and committed that step, whatever the checkpoint interval.
    line = next(line for line in err.splitlines() if line.startswith("interrupted"))
    step = int(line.split(" after step ")[1].split(" ")[0])
    assert committed_step(run_dir) == step and "continue with --resume" in line, line
    pipeline_weights(run_dir, step)  # every block file of it loads


def test_block_that_raises_is_named(tmp_path, transport):
    # A learning rate this large makes a loss non-finite within a few steps: a real error raised
    # inside a block process, which must reach the coordinator with the block's name and message.
    run_dir = tmp_path / "run"
    proc = start([*RUN_ARGS, *transport, "--out", str(run_dir), "--lr", "1e12"])
    try:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 1, err[-3000:]
        assert not wait_gone(proc.pid, 10), "processes left behind"
    finally:
        kill_session(proc)
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert "failed: NonFiniteLossError: non-finite loss" in line and line.startswith("error: block"), err[-3000:]

