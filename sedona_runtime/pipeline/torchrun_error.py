"""Handing a process's one-line error to torchrun, whose failure report otherwise ends with its own
"To enable traceback see: ..." instead of the cause."""
from __future__ import annotations

import json
import os
import time


def under_torchrun() -> bool:
    """Whether torchrun started this process (it hands each worker an error file)."""
    return bool(os.environ.get("TORCHELASTIC_ERROR_FILE"))


def record_for_torchrun(line: str) -> None:
    """Under torchrun, write `line` to this process's error file: torchrun's report, printed after its
    traceback, then ends with it as the root cause. A no-op elsewhere; never raises."""
    if not under_torchrun():
        return
    try:
        with open(os.environ["TORCHELASTIC_ERROR_FILE"], "w") as fp:
            json.dump({"message": line, "timestamp": str(int(time.time()))}, fp)
    except OSError:
        pass
