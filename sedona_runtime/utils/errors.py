"""The one exception type that command-line entry points turn into a clear message and exit code."""
from __future__ import annotations


class SedonaError(Exception):
    """A problem with the user's input or environment: shown as one line, never as a traceback."""

    exit_code: int = 2
    label: str = "error: "  # what the CLIs print before the message ("" for notices such as a clean stop)

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
