"""RPC channels in a one-process RPC group (a channel to itself): backpressure, window, end, errors."""
from __future__ import annotations

import threading
import time

import pytest
import torch

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def rpc_self():
    from pipeline_helpers import free_port
    from sedona_runtime.pipeline.rpc_runtime import start_rpc, stop_rpc

    start_rpc("solo", 0, 1, f"tcp://127.0.0.1:{free_port()}", device=torch.device("cpu"), timeout=20)
    yield "solo"
    stop_rpc(graceful=True, timeout=10)


def test_put_get_order_and_end(rpc_self):
    from sedona_runtime.pipeline.channel import EndOfStream
    from sedona_runtime.pipeline.rpc_channel import RpcRecvChannel, RpcSendChannel

    recv = RpcRecvChannel("order", depth=3)
    send = RpcSendChannel(rpc_self, "order", window=3)
    try:
        got = []

        def consume():
            try:
                while True:
                    got.append(recv.get(10.0))
            except EndOfStream:
                pass

        t = threading.Thread(target=consume)
        t.start()
        for i in range(50):
            send.put((i, torch.full((4,), float(i))), 10.0)
        send.close(10.0)
        t.join(20.0)
        assert [i for i, _ in got] == list(range(50))  # in order despite 3 puts in flight at a time
        assert all(torch.equal(x, torch.full((4,), float(i))) for i, x in got)
    finally:
        recv.unregister()


def test_full_receiver_blocks_the_sender(rpc_self):
    from sedona_runtime.pipeline.channel import ChannelTimeout
    from sedona_runtime.pipeline.rpc_channel import RpcRecvChannel, RpcSendChannel

    recv = RpcRecvChannel("bp", depth=2)
    send = RpcSendChannel(rpc_self, "bp", window=1)
    try:
        send.put(0, 5.0)
        send.put(1, 5.0)
        send.put(2, 5.0)   # returns: window 1 lets one put be in flight, unacknowledged
        t0 = time.monotonic()
        with pytest.raises(ChannelTimeout):
            send.put(3, 0.5)  # needs the ack of put 2, which waits for room in the full queue
        assert time.monotonic() - t0 < 3.0
        assert recv.get(5.0) == 0  # room: put 2 is admitted
        send.flush(5.0)
        assert [recv.get(5.0) for _ in range(2)] == [1, 2]
    finally:
        recv.unregister()


def test_error_travels_down_the_channel(rpc_self):
    from sedona_runtime.pipeline.channel import PeerError
    from sedona_runtime.pipeline.rpc_channel import RpcRecvChannel, RpcSendChannel

    recv = RpcRecvChannel("err", depth=2)
    send = RpcSendChannel(rpc_self, "err", window=2)
    try:
        send.put("ok", 5.0)
        send.fail("block1", "ValueError: bad batch")
        assert recv.get(5.0) == "ok"
        with pytest.raises(PeerError, match="block1: ValueError: bad batch"):
            recv.get(5.0)
    finally:
        recv.unregister()
