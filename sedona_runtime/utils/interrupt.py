"""Stopping a long run cleanly: the first Ctrl-C or SIGTERM asks the loop to stop at its next step boundary
(where it saves what it has), a second one stops at once."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sedona_runtime.utils.errors import SedonaError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by the first stop signal; `signum` names it (the exit code is 128 + signum, as for the shell)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def is_set(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """'SIGINT' (Ctrl-C) or 'SIGTERM'; '' while no signal came."""
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


class Interrupted(SedonaError):
    """A run stopped on a signal, after saving what it could: the message says what was saved and how to
    continue; the exit code is 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""

    exit_code = 130
    label = ""


@contextmanager
def deferred_stop(on_request: Callable[[StopRequest], None] | None = None) -> Iterator[StopRequest]:
    """While inside, the first SIGINT or SIGTERM only sets the returned request and calls `on_request` (to
    say at once that the run stops after the current step); a second one raises KeyboardInterrupt there
    and then. Signal handlers exist only in the main thread: elsewhere the request is never set.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        if request.is_set():
            raise KeyboardInterrupt
        request.signum = signum
        if on_request is not None:
            on_request(request)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
