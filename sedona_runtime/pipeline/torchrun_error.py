"""Handing a process's one-line error to torchrun, whose failure report otherwise ends with its own
"To enable traceback see: ..." instead of the cause."""
from __future__ import annotations

import json
import os
import time


def record_for_torchrun(line: str) -> None:
    """Under torchrun (TORCHELASTIC_ERROR_FILE set), write `line` to this process's error file: torchrun's
    report, printed after its traceback, then ends with it as the root cause. A no-op elsewhere; never
    raises."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        with open(path, "w") as fp:
            json.dump({"message": line, "timestamp": str(int(time.time()))}, fp)
    except OSError:
        pass
