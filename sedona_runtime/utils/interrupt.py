"""Stopping a long run cleanly: the first Ctrl-C or SIGTERM asks the loop to stop at its next step boundary
(where it saves what it has), a second one stops at once."""
from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sedona_runtime.utils.errors import SedonaError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SAME_SIGNAL_S = 0.5  # stop signals this close to the first one are the same request


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
    say at once that the run stops after the current step); a second one, SAME_SIGNAL_S or more after the
    first, raises KeyboardInterrupt there and then (closer ones are the same stop delivered twice, as
    timeout(1) does). Signal handlers exist only in the main thread: elsewhere the request is never set.

    "At once" holds even while the main thread is deep in one long PyTorch call (a search step can take
    minutes): Python runs signal handlers only between bytecodes of the main thread, so a watcher thread
    reads the signal from a wakeup fd (written by the C-level handler) and calls `on_request` from there.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    lock = threading.Lock()
    # A signal is the second request only when it comes SAME_SIGNAL_S or more after the first: timeout(1)
    # and some schedulers deliver one stop twice at once (to the process and to its group). Two clocks,
    # because a handler call can come late (after a long C call) while the watcher reads at once.
    first_at = {"handler": None, "watcher": None}
    late = {"handler": 0, "watcher": 0}
    count = {"handler": 0, "watcher": 0}
    wakeup = {"on": False}  # the watcher reads the signals (set_wakeup_fd took)

    def seen(source: str) -> None:
        now = time.monotonic()
        with lock:
            count[source] += 1
            if first_at[source] is None:
                first_at[source] = now
            elif now - first_at[source] >= SAME_SIGNAL_S:
                late[source] += 1

    def first(signum: int) -> None:
        with lock:
            if request.is_set():
                return
            request.signum = signum
        if on_request is not None:
            on_request(request)

    def handler(signum: int, frame: Any) -> None:
        seen("handler")
        # The watcher's clock is the true one (the first handler call may itself have come late); give
        # it a moment to read the signal this call stands for, then decide.
        deadline = time.monotonic() + 0.2
        while wakeup["on"] and count["watcher"] < count["handler"] and time.monotonic() < deadline:
            time.sleep(0.005)
        caught_up = wakeup["on"] and count["watcher"] >= count["handler"]
        if late["watcher"] or (not caught_up and late["handler"]):
            raise KeyboardInterrupt
        first(signum)

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        wakeup["on"] = True
    except ValueError:  # pragma: no cover - not the main thread of the main interpreter
        previous_fd = None
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            hits = [b for b in data if b in STOP_SIGNALS]
            if hits and not done.is_set():
                for _ in hits:
                    seen("watcher")
                first(hits[0])

    watcher = threading.Thread(target=watch, name="stop-signal-watcher", daemon=True)
    watcher.start()
    try:
        yield request
    finally:
        done.set()
        if previous_fd is not None:
            signal.set_wakeup_fd(previous_fd)
        for s, h in previous.items():
            signal.signal(s, h)
        os.close(write_fd)  # ends the watcher's read
        watcher.join(timeout=5)
        os.close(read_fd)
