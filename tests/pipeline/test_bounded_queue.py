"""The receiver-owned bounded queue: order, backpressure through pending futures, end and error markers."""
from __future__ import annotations

import pytest

from sedona_runtime.pipeline.bounded_queue import BoundedQueue
from sedona_runtime.pipeline.messages import END, Failure
from sedona_runtime.pipeline.channel import Aborted, ChannelTimeout, EndOfStream, PeerError
from sedona_runtime.pipeline.stop import StopSignal

pytestmark = pytest.mark.timeout(30)


def test_full_queue_delays_acceptance_until_a_get():
    q = BoundedQueue(depth=2, stop=StopSignal())
    futs = [q.put_async(i) for i in range(4)]
    assert [f.done() for f in futs] == [True, True, False, False]  # a full queue holds the reply back
    assert q.qsize() == 4
    assert q.get(1.0) == 0
    assert futs[2].done() and not futs[3].done()  # one get admits exactly one waiting put
    assert [q.get(1.0) for _ in range(3)] == [1, 2, 3]
    assert futs[3].done()


def test_out_of_order_delivery_is_put_back_in_sender_order():
    q = BoundedQueue(depth=4, stop=StopSignal())
    late = q.put_async("b", sender="s", seq=1)
    assert not late.done() and q.qsize() == 0  # held back until seq 0 arrives
    q.put_async("x", sender="t", seq=0)        # another sender is independent
    q.put_async("a", sender="s", seq=0)
    assert late.done()
    assert [q.get(1.0) for _ in range(3)] == ["x", "a", "b"]


def test_end_and_error_markers_raise_on_get():
    q = BoundedQueue(depth=2, stop=StopSignal())
    q.put_async(Failure("block1", "boom"))
    q.put_async(END)
    with pytest.raises(PeerError, match="block1: boom"):
        q.get(1.0)
    with pytest.raises(EndOfStream):
        q.get(1.0)


def test_every_wait_is_bounded_and_abortable():
    stop = StopSignal()
    q = BoundedQueue(depth=1, stop=stop)
    with pytest.raises(ChannelTimeout):
        q.get(0.1)
    stop.set("peer died")
    with pytest.raises(Aborted, match="peer died"):
        q.get(10.0)
