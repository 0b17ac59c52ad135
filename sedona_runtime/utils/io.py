"""Atomic file writes (temp file + rename) so that a crash never leaves a half-written file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from sedona_runtime.utils.errors import SedonaError


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise SedonaError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text to `path` atomically."""
    return _atomic(path, lambda fh: fh.write(text), "w")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (e.g. a PNG rendered into a BytesIO)."""
    return _atomic(path, lambda fh: fh.write(data), "wb")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """torch.save `obj` to `path` atomically."""
    import torch

    return _atomic(path, lambda fh: torch.save(obj, fh), "wb")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line (metrics logs are append-only; a torn last line is tolerated by readers)."""
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
