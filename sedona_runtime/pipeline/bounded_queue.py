"""A bounded FIFO whose put never blocks: it returns a future completed once the item is accepted."""
from __future__ import annotations

import collections
import threading
from typing import Any

import torch

from sedona_runtime.pipeline.channel import ChannelError, EndOfStream, PeerError
from sedona_runtime.pipeline.messages import END, Failure
from sedona_runtime.pipeline.stop import STOP, StopSignal


class Broken:
    """The transport itself failed while receiving (get raises ChannelError)."""

    def __init__(self, message: str) -> None:
        self.message = message


class BoundedQueue:
    """`depth` accepted items at most; further puts wait, their futures still pending (backpressure).

    RPC handler threads call `put_async` and return its future immediately, so no handler thread
    ever blocks on a full queue (a blocking put in a handler deadlocks once the handler pool is
    exhausted). The consumer thread calls `get`, which admits the oldest waiting put.
    """

    def __init__(self, depth: int, stop: StopSignal = STOP) -> None:
        if depth < 1:
            raise ValueError("queue depth must be at least 1")
        self.depth = depth
        self._items: collections.deque = collections.deque()
        self._waiting: collections.deque = collections.deque()  # (item, future) not yet admitted
        # Concurrent RPC handler threads may deliver one sender's puts out of order: each sender
        # numbers its puts and they enter the queue in that order (early ones are held back).
        self._next: dict[str, int] = {}
        self._held: dict[str, dict[int, tuple[Any, torch.futures.Future]]] = {}
        self._cond = threading.Condition()
        self._stop = stop

    def put_async(self, item: Any, sender: str | None = None, seq: int | None = None) -> torch.futures.Future:
        """Offer `item` (the `seq`-th put of `sender`, counting from 0, when given); never blocks."""
        fut: torch.futures.Future = torch.futures.Future()
        admitted = []
        with self._cond:
            if sender is None:
                self._offer(item, fut, admitted)
            else:
                held = self._held.setdefault(sender, {})
                held[seq] = (item, fut)
                nxt = self._next.get(sender, 0)
                while nxt in held:
                    self._offer(*held.pop(nxt), admitted)
                    nxt += 1
                self._next[sender] = nxt
        for f in admitted:
            f.set_result(None)  # outside the lock: completing may run RPC callbacks inline
        return fut

    def _offer(self, item: Any, fut: torch.futures.Future, admitted: list) -> None:
        if len(self._items) < self.depth and not self._waiting:
            self._items.append(item)
            admitted.append(fut)
            self._cond.notify_all()
        else:
            self._waiting.append((item, fut))

    def get(self, timeout: float) -> Any:
        """Next item; raises EndOfStream / PeerError for the markers, ChannelTimeout, Aborted."""
        with self._cond:
            self._stop.wait_for(lambda: bool(self._items), timeout, "the next item", cond=self._cond)
            item = self._items.popleft()
            self._cond.notify_all()  # a receiver thread may wait for room (wait_room)
            admit = None
            if self._waiting and len(self._items) < self.depth:
                nxt, admit = self._waiting.popleft()
                self._items.append(nxt)
        if admit is not None:
            admit.set_result(None)
        if item is END:
            raise EndOfStream()
        if isinstance(item, Failure):
            raise PeerError(item.origin, item.message, item.channel)
        if isinstance(item, Broken):
            raise ChannelError(item.message)
        return item

    def wait_room(self, timeout: float, what: str) -> None:
        """Block until one more put would be admitted at once (a receiver thread posts its next receive)."""
        with self._cond:
            self._stop.wait_for(lambda: len(self._items) + len(self._waiting) < self.depth, timeout, what,
                                cond=self._cond)

    def qsize(self) -> int:
        with self._cond:
            return len(self._items) + len(self._waiting)
