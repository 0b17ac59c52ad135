"""Stopping and resuming a search: Ctrl-C at a step boundary, and which settings a resume may change."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from sedona_runtime.search.config import RESUME_FREE
from sedona_runtime.utils.config import flatten
from sedona_runtime.utils.errors import SedonaError


@contextmanager
def deferred_interrupt() -> Iterator[threading.Event]:
    """While inside, the first SIGINT only sets the returned event (the loop stops at a step boundary)."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def check_resumable(saved: dict, now: dict) -> None:
    """SedonaError naming the first setting that differs from the stopped search's."""
    a, b = flatten(saved), flatten(now)
    # The model's num_classes/stem/in_channels were resolved from the data when the search began.
    derived = {"model.num_classes", "model.stem", "model.in_channels"}
    for key in sorted(set(a) | set(b)):
        if key in RESUME_FREE or key in derived:
            continue
        if a.get(key) != b.get(key):
            raise SedonaError(f"cannot resume: {key} was {a.get(key)!r}, now {b.get(key)!r} "
                              "(resume with the same settings, or start over with --overwrite)")
