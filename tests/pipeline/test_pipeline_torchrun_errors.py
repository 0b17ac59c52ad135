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
    assert _last_line(err).endswith(ours), err[-2000:]  # torchrun's root-cause entry quotes our line last


def _last_line(err: str) -> str:
    """The last line torchrun wrote that is not a rule of '=' or '-'."""
    return [x.strip() for x in err.splitlines() if x.strip() and not set(x.strip()) <= set("=-")][-1]


def test_a_rank_started_with_other_process_settings_is_named_with_the_option(tmp_path):
    """Each torchrun rank reads its own command line: block 2 started with another --window than the
    coordinator's stops at its setup, and the run ends on one line naming the option."""
    import subprocess
    import sys

    from pipeline_helpers import ROOT, env

    port = free_port()
    args = ["--blocks", "2", "--decoupling", "dgl:2", "--arch", "small", "--width", "0.25", "--image-size", "8",
            "--steps", "2", "--devices", "cpu", "--threads", "1", "--plain", "--timeout", "60",
            "--out", str(tmp_path / "run")]
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "3",
                             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--max-restarts", "0",
                             str(ROOT / "tests" / "pipeline" / "rank_argv.py"), "2", "--window 3", *args],
                            cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=100)
    finally:
        kill_session(proc)
    assert proc.returncode != 0
    line = "started with --window 3, the coordinator (rank 0) with 2: start every rank with the same --window"
    assert f"error: block2 failed: {line}" in err, err[-3000:]  # the coordinator's
    assert _last_line(err).endswith(f"error: block2: {line}"), err[-2000:]  # torchrun's root cause: the block's own
