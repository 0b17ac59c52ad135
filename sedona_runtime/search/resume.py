"""Stopping and resuming a search: Ctrl-C at a step boundary, and which settings a resume may change."""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sedona_runtime.search.config import RESUME_FREE
from sedona_runtime.utils.config import flatten
from sedona_runtime.utils.errors import SedonaError


@contextmanager
def deferred_interrupt(notify: Callable[[], None] | None = None) -> Iterator[threading.Event]:
    """While inside, the first SIGINT only sets the returned event (the loop stops at a step boundary).

    `notify` is called once, at once, when that first SIGINT arrives, even while the main thread is deep in
    a long PyTorch call (a search step can take minutes): Python runs signal handlers only between bytecodes
    of the main thread, so a watcher thread reads the signal from a wakeup fd (written by the C-level
    handler) and calls `notify` from there. A second SIGINT raises KeyboardInterrupt in the main thread.
    """
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event  # signal handlers can only be installed from the main thread
        return
    lock = threading.Lock()
    seen = {"notified": False, "handled": 0, "bytes": 0}  # Python-level calls; signals the watcher read

    def first_notice() -> None:
        with lock:
            if seen["notified"]:
                return
            seen["notified"] = True
        event.set()
        if notify is not None:
            notify()

    def handler(signum: int, frame: Any) -> None:
        # Two signals during one long C call reach Python as one call, but the watcher counted both.
        seen["handled"] += 1
        if max(seen["handled"], seen["bytes"]) >= 2:
            raise KeyboardInterrupt
        first_notice()

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # pragma: no cover - not the main thread of the main interpreter
        previous_fd = None
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            hits = data.count(signal.SIGINT)
            if hits and not stop.is_set():
                seen["bytes"] += hits
                first_notice()

    watcher = threading.Thread(target=watch, name="search-interrupt-watcher", daemon=True)
    watcher.start()
    try:
        yield event
    finally:
        stop.set()
        if previous_fd is not None:
            signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous)
        os.close(write_fd)  # ends the watcher's read
        watcher.join(timeout=5)
        os.close(read_fd)


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
