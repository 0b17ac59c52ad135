"""The process-wide stop signal that every bounded wait in the pipeline checks."""
from __future__ import annotations

import threading
import time
from typing import Callable

from sedona_runtime.pipeline.channel import Aborted, ChannelTimeout

# Waits are sliced so that a stop request (abort RPC, watchdog, signal) is seen within this long.
POLL_S = 0.05


class StopSignal:
    """Set once with a reason; every pipeline wait raises Aborted(reason) soon after."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason = ""

    def set(self, reason: str) -> None:
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
                self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        with self._lock:
            self.reason = ""
            self._event.clear()

    def check(self) -> None:
        if self._event.is_set():
            raise Aborted(self.reason or "aborted")

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, raising Aborted as soon as a stop is requested."""
        if self._event.wait(seconds):
            self.check()

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str,
                 cond: threading.Condition | None = None) -> None:
        """Wait until `ready()` (checked under `cond` if given), bounded by `timeout` and the stop signal."""
        deadline = time.monotonic() + timeout
        # Under `cond`, a notify wakes the wait at once; without one only the stop signal does.
        wait = cond.wait if cond is not None else self._event.wait
        while True:
            if ready():
                return
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
            wait(min(POLL_S, left))


STOP = StopSignal()
