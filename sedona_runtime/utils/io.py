"""Atomic file writes (temp file + rename) so that a crash never leaves a half-written file.

Every OS error on a write (disk full, quota, read-only file system, I/O error) becomes one `WriteError`
line naming the file, the cause and what was kept. Files get the permissions a plain `open()` would give
them: 0666 less the umask for a new file, the old file's mode when one is replaced.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable

from sedona_runtime.utils.errors import SedonaError


class WriteError(SedonaError):
    """An OS error while writing `path`: one line with the file, the cause and what was kept."""

    def __init__(self, path: Path, cause: str, kept: str) -> None:
        super().__init__(f"cannot write {path}: {cause}; {kept}")
        self.path, self.cause, self.kept = path, cause, kept


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError `exc` is or was raised from (torch.save reports a failed write as a RuntimeError whose
    context is the OSError), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def describe(exc: OSError) -> str:
    """'No space left on device' (the strerror), or the exception text when there is none."""
    return exc.strerror or str(exc) or type(exc).__name__


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new hidden temp file next to `path`, created with mode 0666 so the umask applies as for `open()`
    (tempfile.mkstemp would force 0600), and with the mode of the file it replaces when there is one."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        except OSError:
            os.close(fd)
            os.unlink(tmp)
            raise
        return fd, tmp
    raise FileExistsError(f"no free temporary name next to {path}")


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    try:
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
    except OSError:
        kept = f"any previous {path.name} is kept"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _open_temp(path)
    except OSError as exc:
        raise WriteError(path, describe(exc), kept) from exc
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        cause = os_error_in(exc) if isinstance(exc, Exception) else None
        if cause is None:
            raise  # not an OS error: a bug (or an interrupt), shown as it is
        raise WriteError(path, describe(cause), kept) from exc
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text to `path` atomically (WriteError on any OS error; the old file is then unchanged)."""
    return _atomic(path, lambda fh: fh.write(text), "w")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (e.g. a PNG rendered into a BytesIO); WriteError as above."""
    return _atomic(path, lambda fh: fh.write(data), "wb")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically; WriteError as above."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """torch.save `obj` to `path` atomically; WriteError as above."""
    import torch

    return _atomic(path, lambda fh: torch.save(obj, fh), "wb")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line (metrics logs are append-only).

    WriteError on any OS error; the file is cut back to its earlier lines, so no torn line is left.
    """
    path = Path(path)
    line = json.dumps(record) + "\n"
    size = None
    try:
        with open(path, "a") as fh:
            size = fh.tell()
            fh.write(line)
    except OSError as exc:
        if size is not None:
            try:
                os.truncate(path, size)
            except OSError:
                pass  # readers skip a torn last line, and a resumed run drops it
        raise WriteError(path, describe(exc), "its earlier lines are kept" if size else "nothing was written") from exc
