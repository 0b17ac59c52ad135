"""c10d point-to-point channels between two processes (gloo on loopback): order, backpressure, end, errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict:
    """{rank: {scenario: what that side saw}} of one process pair that played every scenario."""
    from pipeline_helpers import env, free_port

    from sedona_runtime.pipeline import rendezvous

    tmp = tmp_path_factory.mktemp("p2p")
    sock = rendezvous.listen_loopback(free_port())
    port = sock.getsockname()[1]
    store = rendezvous.serve_store(sock, 2, 30.0)  # noqa: F841 - serves while the pair runs
    script = Path(__file__).with_name("p2p_pair.py")
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(port), str(tmp / f"{r}.json")], env=env())
             for r in (0, 1)]
    try:
        for p in procs:
            p.wait(60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    out = {r: json.loads((tmp / f"{r}.json").read_text()) for r in (0, 1) if (tmp / f"{r}.json").exists()}
    assert set(out) == {0, 1}, out
    for value in out.values():
        assert isinstance(value, dict), value  # else the side's traceback
    return out


def test_items_arrive_in_order_with_markers_and_long_headers(pair):
    out = {rank: seen["order"] for rank, seen in pair.items()}
    assert out[1]["batches_in_order"]
    assert out[1]["markers"] == [["checkpoint", 10], ["checkpoint", 20], ["checkpoint", 30], ["checkpoint", 40]]
    assert out[1]["positions"] == [10, 21, 32, 43]  # each marker right after its batch
    assert out[1]["long"]


def test_a_full_receiver_blocks_the_sender(pair):
    out = {rank: seen["backpressure"] for rank, seen in pair.items()}
    assert out[0].startswith("blocked"), out[0]
    assert float(out[0].split()[1]) < 3.0
    assert out[1] == [0, 1, 2, 3]


def test_an_error_travels_down_the_channel(pair):
    out = {rank: seen["error"] for rank, seen in pair.items()}
    assert out[1] == ["ok", "PeerError: block1: ValueError: bad batch"]


def test_receive_buffers_are_reused_only_once_the_consumer_let_go():
    """A fresh 32 MiB host buffer costs twice a reused one (page faults): the pool recycles a buffer,
    but never while the consumer holds the tensor it was given, a view of it, or anything on its storage."""
    from sedona_runtime.pipeline.p2p_channel import HostBuffers

    pool = HostBuffers(keep=4)
    first = pool.take((4, 8), torch.float32, pin=False)
    addr = first.data_ptr()
    assert pool.take((4, 8), torch.float32, pin=False).data_ptr() != addr  # held by the consumer
    view = first[1:]
    del first
    assert pool.take((4, 8), torch.float32, pin=False).data_ptr() != addr  # a view still holds it
    del view
    again = pool.take((4, 8), torch.float32, pin=False)
    assert again.data_ptr() == addr  # let go: reused
    assert pool.take((4, 8), torch.float64, pin=False).data_ptr() != addr  # another dtype, another buffer
