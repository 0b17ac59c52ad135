"""Ctrl-C and SIGTERM during a pipelined run: the first stops at a committed checkpoint, a second aborts."""
from __future__ import annotations

import signal
import threading


class GracefulStop:
    """While armed, the first SIGINT / SIGTERM asks the run to stop at a step boundary; a second Ctrl-C
    raises KeyboardInterrupt at once. Installed by the coordinator for the run (main thread only)."""

    def __init__(self) -> None:
        self.armed, self.requested, self.signal = False, False, ""
        self._saved: dict = {}

    def _handle(self, signum, frame) -> None:
        if not self.armed or (self.requested and signum == signal.SIGINT):
            raise KeyboardInterrupt
        self.requested, self.signal = True, signal.Signals(signum).name

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
