"""One owner per run directory: a lock file created exclusively that names its holder (host, pid, since when).

`<dir>/run.lock` is created with O_EXCL and holds JSON {host, pid, started, since, command}; its holder also
keeps an flock on it, which the kernel drops when the holder dies however it dies. On this host a lock
whose flock is free is stale (its holder is gone) and is taken over; where the file system has no flock,
a lock whose pid is dead (or was reused by a younger process) is stale. A lock taken on another host
cannot be checked from here: it is refused, and the message says how to remove it once that run is gone.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sedona_runtime.utils.errors import SedonaError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the pid test alone decides
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


@dataclass
class LockHolder:
    """Who holds a run directory: host name, pid, process start time (epoch s), local time taken, command."""

    host: str
    pid: int
    started: float | None
    since: str
    command: str

    @classmethod
    def me(cls) -> "LockHolder":
        argv = list(getattr(sys, "orig_argv", None) or sys.argv) or ["python"]  # as typed: python -m pkg ...
        command = " ".join([Path(argv[0]).name, *argv[1:]])
        return cls(socket.gethostname(), os.getpid(), _start_time(os.getpid()),
                   time.strftime("%Y-%m-%d %H:%M:%S %z"), command[:200])

    def describe(self) -> str:
        """'pid 4242 on host gpu7 since 2025-06-01 12:00:03 +0200 (python -m sedona_runtime.train ...)'."""
        return f"pid {self.pid} on host {self.host} since {self.since} ({self.command})"


class RunLocked(SedonaError):
    """The run directory belongs to another live run (or one that cannot be checked from this host)."""

    def __init__(self, message: str, holder: LockHolder | None) -> None:
        super().__init__(message)
        self.holder = holder


def _start_time(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - no psutil, no such process, no permission: unknown
        return None


def _alive(holder: LockHolder) -> bool:
    """Whether the holder's process still runs on this host (a reused pid is not the holder)."""
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    started = _start_time(holder.pid)
    return holder.started is None or started is None or abs(started - holder.started) < 1.0


def _flock(fd: int) -> bool | None:
    """Try to take the flock: True taken, False held by another open file, None no flock here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_FLOCK:
            return None
        raise


def _read(fd: int) -> LockHolder | None:
    """The holder written in the lock file, or None while it is empty or being written."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 1 << 16).decode())
        return LockHolder(str(data["host"]), int(data["pid"]), data.get("started"), str(data.get("since", "?")),
                          str(data.get("command", "?")))
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class RunLock:
    """The lock of one run directory. `with RunLock(dir):` holds it for the block (RunLocked when another
    live run holds it); `acquire()`/`release()` do the same by hand. The directory must exist."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    # -- probing --------------------------------------------------------------------------------------
    def holder(self) -> LockHolder | None:
        """The live run holding the lock (or one on another host), None when it is free or stale."""
        if self._fd is not None:
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SedonaError(f"cannot read the lock {self.path}: {exc.strerror or exc}") from None
        try:
            return self._live_holder(fd, probing=True)
        finally:
            os.close(fd)  # also drops a probing flock

    def check(self) -> None:
        """RunLocked naming the holder when another live run holds the directory (nothing is changed)."""
        holder = self.holder()
        if holder is not None:
            raise RunLocked(self._message(holder), holder)

    def _live_holder(self, fd: int, *, probing: bool) -> LockHolder | None:
        """The holder if the lock behind `fd` is live; None if stale (then `fd` holds its flock)."""
        info = _read(fd)
        if info is not None and info.host != socket.gethostname():
            return info  # its liveness cannot be checked from here
        got = _flock(fd)
        if got is False:
            return info or LockHolder("?", 0, None, "now", "another process is claiming it")
        if got is None:  # no flock on this file system: the pid decides
            if info is None:
                young = time.time() - os.fstat(fd).st_mtime < 10.0
                return LockHolder("?", 0, None, "now", "another process is claiming it") if young else None
            if _alive(info):
                return info
        if probing and got:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return None

    def _message(self, holder: LockHolder) -> str:
        where = f"run directory {self.directory}"
        if holder.pid == 0:
            return f"{where} is being claimed by another process right now ({self.path}); try again in a moment"
        if holder.host != socket.gethostname():
            return (f"{where} is locked by {holder.describe()}; from this host ({socket.gethostname()}) it cannot "
                    f"be checked whether that run still goes: if it does not, delete {self.path} and start again")
        return (f"{where} is in use by another run: {holder.describe()}; wait for it to end or stop it "
                "(Ctrl-C saves a checkpoint), or choose another --out")

    # -- owning -------------------------------------------------------------------------------------
    def acquire(self) -> "RunLock":
        """Take the lock (a stale one is taken over); RunLocked naming the live holder otherwise."""
        if self._fd is not None:
            return self
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        for _ in range(10):
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                fd = self._take_over(flags)
                if fd is None:
                    continue  # released or replaced meanwhile: try again
            except OSError as exc:
                raise SedonaError(f"cannot create the lock {self.path}: {exc.strerror or exc}") from None
            else:
                if _flock(fd) is False or not _same_file(fd, self.path):
                    os.close(fd)  # another process took it over in between: it is theirs
                    continue
            try:
                data = json.dumps(asdict(LockHolder.me())).encode()
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, data)
                os.fsync(fd)
            except OSError as exc:
                os.close(fd)
                raise SedonaError(f"cannot write the lock {self.path}: {exc.strerror or exc}") from None
            self._fd = fd
            return self
        raise SedonaError(f"run directory {self.directory}: its lock {self.path} keeps changing hands; "
                          "another process is claiming it, try again")

    def _take_over(self, flags: int) -> int | None:
        """An fd holding the stale lock at `self.path`, None if it vanished; RunLocked if it is live."""
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SedonaError(f"cannot open the lock {self.path}: {exc.strerror or exc}") from None
        try:
            info = _read(fd)
            holder = self._live_holder(fd, probing=False)
        except BaseException:
            os.close(fd)
            raise
        if holder is not None:
            os.close(fd)
            raise RunLocked(self._message(holder), holder)
        if not _same_file(fd, self.path):  # its holder released it while we looked
            os.close(fd)
            return None
        if info is not None:
            log.info("taking over the stale lock of %s: that process is gone", info.describe())
        return fd

    def release(self) -> None:
        """Give the lock up (delete the file while still holding it, so no one takes over a dying lock)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink()
        except OSError:
            pass  # the directory went away: nothing left to release
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a lock dropped without release (an object that failed half-built)
        try:
            self.release()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
