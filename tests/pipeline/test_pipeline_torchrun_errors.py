"""Under torchrun, a user error ends torchrun's own failure report as its root cause: our one line."""
from __future__ import annotations

import pytest

from pipeline_helpers import free_port, kill_session, start

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]


def test_a_user_error_is_the_last_thing_torchrun_says(tmp_path):
    port = free_port()
    proc = start(["--blocks", "2", "--decoupling", "dgl:3", "--arch", "small", "--devices", "cpu", "--plain",
                  "--out", str(tmp_path / "run")],
                 torchrun=["--nnodes", "1", "--nproc-per-node", "3", "--rdzv-backend", "c10d",
                           "--rdzv-endpoint", f"127.0.0.1:{port}", "--max-restarts", "0"])
    try:
        _, err = proc.communicate(timeout=100)
    finally:
        kill_session(proc)
    assert proc.returncode != 0
    ours = "error: --blocks 2 does not match the decoupling 'dgl:3', which has K = 3 blocks"
    assert ours in err, err[-3000:]
    lines = [line.strip() for line in err.splitlines() if line.strip() and not set(line.strip()) <= set("=-")]
    assert lines[-1].endswith(ours), err[-2000:]  # torchrun's root-cause entry quotes our line last
