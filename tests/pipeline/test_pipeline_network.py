"""A run on one machine listens on loopback only, and every block checks that it sees the run directory."""
from __future__ import annotations

import ipaddress
import time

import psutil
import pytest

from pipeline_helpers import RUN_ARGS, committed_step, kill_session, start, tree

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]


def _listening(proc) -> list[tuple[int, str, int]]:
    out = []
    for p in tree(proc):
        try:
            for c in p.net_connections("inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.append((p.pid, c.laddr.ip, c.laddr.port))
        except psutil.Error:
            pass
    return out


def test_a_local_run_listens_on_loopback_only(tmp_path):
    # p2p: the RPC control plane, its store and the gloo group all listen; a slow queue keeps the run going.
    proc = start([*RUN_ARGS, "--transport", "p2p", "--out", str(tmp_path / "run"), "--queue-depth", "1",
                  "--window", "1", "--steps", "300"])
    try:
        deadline = time.monotonic() + 90
        while committed_step(tmp_path / "run") is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.1)
        sockets = _listening(proc)
    finally:
        kill_session(proc)
    assert len({pid for pid, _, _ in sockets}) == 4, sockets  # the coordinator and three blocks listen
    exposed = [s for s in sockets if not ipaddress.ip_address(s[1]).is_loopback]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_a_block_that_does_not_see_the_run_directory_says_so(tmp_path):
    from sedona_runtime.pipeline.config import PipelineConfig
    from sedona_runtime.pipeline.placement import Placement
    from sedona_runtime.pipeline.rendezvous import Meeting
    from sedona_runtime.pipeline.worker import Stage
    from sedona_runtime.utils.errors import SedonaError

    stage = Stage(PipelineConfig(blocks=2), 2, 3, Meeting(), Placement(rank=2))
    token = tmp_path / ".pipeline-token"
    token.write_text("abc")
    stage.setup = {"token": {"path": str(token), "value": "abc"}}
    stage._check_shared_directory(str(tmp_path))  # sees it: fine
    stage.setup = {"token": {"path": str(tmp_path / "elsewhere" / ".pipeline-token"), "value": "abc"}}
    with pytest.raises(SedonaError, match=r"does not see the run directory .* \(no shared filesystem\?\)"):
        stage._check_shared_directory(str(tmp_path))
