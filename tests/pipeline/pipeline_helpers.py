"""Shared helpers for the pipeline tests: the common tiny run, launching it, and leaving nothing behind."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[2]

# One small configuration for every multi-process test: K = 3 on the small model and the embedded
# digits, one torch thread per block (bit-reproducible CPU kernels), checkpoints every 6 steps.
STEPS = 30
CKPT = 6
RUN_ARGS = ["--blocks", "3", "--decoupling", "dgl:3", "--arch", "small", "--width", "0.5", "--dataset", "digits",
            "--image-size", "16", "--batch-size", "32", "--steps", str(STEPS), "--eval-interval", "10",
            "--checkpoint-interval", str(CKPT), "--threads", "1", "--plain", "--timeout", "60", "--devices", "cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = dict(os.environ)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(key, None)
    e["PYTHONUNBUFFERED"] = "1"
    return e


def start(args: list[str], *, torchrun: list[str] | None = None, cwd: Path = ROOT) -> subprocess.Popen:
    """Start `launch/greedy.py ARGS` (under torchrun when given its options) in a new session, in `cwd`."""
    if torchrun is None:
        cmd = [sys.executable, str(ROOT / "launch" / "greedy.py"), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", *torchrun, str(ROOT / "launch" / "greedy.py"), *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def run_to_end(args: list[str], *, cwd: Path = ROOT, timeout: float = 120) -> str:
    """Run `launch/greedy.py ARGS` to a successful end (bounded) and return its stdout; nothing is left behind."""
    proc = start(args, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err[-3000:]
        assert not tree(proc)
    finally:
        kill_session(proc)
    return out


def finish_nodes(nodes: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    """(stdout, stderr) of every torchrun node once all exited 0; every node's session is killed either way."""
    try:
        outs = [node.communicate(timeout=timeout) for node in nodes]
        for node, (_, err) in zip(nodes, outs):
            assert node.returncode == 0, err[-3000:]
    finally:
        for node in nodes:
            kill_session(node)
    return outs


def tree(proc: subprocess.Popen) -> list[psutil.Process]:
    """`proc` and all its descendants that still exist."""
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_session(proc: subprocess.Popen) -> None:
    """Kill the whole process group started by `start` (the finally of every test)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def session_alive(pgid: int) -> list[int]:
    """Pids still in process group `pgid` (zombies excluded)."""
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


def wait_gone(pgid: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = session_alive(pgid)
        if not left:
            return []
        time.sleep(0.1)
    return session_alive(pgid)


def committed_step(run_dir: Path) -> int | None:
    try:
        return int(json.loads((run_dir / "checkpoints" / "pipeline.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return None


def pipeline_weights(run_dir: Path, step: int) -> list[dict]:
    """The block states of the committed pipeline checkpoint of `step` (written by the blocks)."""
    out = []
    for i in (1, 2, 3):
        path = run_dir / "checkpoints" / "blocks" / f"step_{step:08d}" / f"block{i}.pt"
        out.append(torch.load(path, map_location="cpu", weights_only=False)["blocks"][0]["block"])
    return out


def assert_same_weights(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want), start=1):
        assert g.keys() == w.keys(), f"block {i}: different parameter names"
        for name in w:
            # Bitwise: each block process runs the same kernels, with one thread, on the same inputs in
            # the same order as the single-process trainer, so there is no round-off to tolerate.
            assert torch.equal(g[name], w[name]), f"block {i}: {name} differs (max |d| = " \
                f"{(g[name].double() - w[name].double()).abs().max():.3g})"


def listening(proc: subprocess.Popen) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening inet socket of `proc` and its descendants."""
    out = []
    for p in tree(proc):
        try:
            for c in p.net_connections("inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.append((p.pid, c.laddr.ip, c.laddr.port))
        except psutil.Error:
            pass
    return out
