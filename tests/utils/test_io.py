"""Atomic writes: the new content or the old one, never a half-written file or a stray temp file."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import torch

from sedona_runtime.utils import io as io_mod
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import (WriteError, append_jsonl, atomic_torch_save, atomic_write_bytes, atomic_write_json,
                                     atomic_write_text)


def test_atomic_write_bytes_creates_parents_and_replaces(tmp_path):
    path = tmp_path / "a" / "b" / "fig.png"
    assert atomic_write_bytes(path, b"\x89PNG first") == path
    assert path.read_bytes() == b"\x89PNG first"
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(path.parent) == ["fig.png"]  # no temp file left behind


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "fig.png"
    atomic_write_bytes(path, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["fig.png"]


def test_unwritable_place_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SedonaError, match="cannot write"):
        atomic_write_bytes(tmp_path / "file" / "fig.png", b"data")


# -- disk full and other OS errors: one line naming the file, the cause and what was kept -----------------------
FULL = Path("/dev/full")  # every write to it fails with ENOSPC, as on a full disk


@pytest.fixture
def full_disk(monkeypatch):
    """Writes of files whose name is in the returned set go to /dev/full (a real ENOSPC from the kernel)."""
    if not FULL.exists():
        pytest.skip("no /dev/full")
    names: set[str] = set()
    real = io_mod._open_temp

    def open_temp(path):
        fd, tmp = real(path)
        if path.name in names:
            os.close(fd)
            fd = os.open(FULL, os.O_WRONLY)
        return fd, tmp

    monkeypatch.setattr(io_mod, "_open_temp", open_temp)
    return names


@pytest.mark.parametrize("write", [
    lambda p: atomic_write_json(p, {"big": "x" * 100_000}),
    lambda p: atomic_torch_save(p, {"w": torch.zeros(100_000)}),
])
def test_disk_full_is_one_line_and_keeps_the_old_file(tmp_path, full_disk, write):
    path = tmp_path / "summary.json"
    with pytest.raises(WriteError) as info:  # no old file yet
        full_disk.add(path.name)
        write(path)
    assert str(info.value) == f"cannot write {path}: No space left on device; no summary.json was written"
    assert os.listdir(tmp_path) == []  # no temp file left
    full_disk.clear()
    atomic_write_text(path, "old")
    full_disk.add(path.name)
    with pytest.raises(WriteError) as info:
        write(path)
    assert str(info.value) == f"cannot write {path}: No space left on device; the previous summary.json is kept"
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]


def test_append_jsonl_that_fails_leaves_no_torn_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1})

    class HalfWritten:  # writes part of the line, then the disk is full
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def tell(self):
            return self.fh.tell()

        def write(self, text):
            self.fh.write(text[:4])
            self.fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_mod, "open", lambda p, mode: HalfWritten(open(p, mode)), raising=False)
    with pytest.raises(WriteError) as info:
        append_jsonl(path, {"step": 2})
    assert str(info.value) == f"cannot write {path}: No space left on device; its earlier lines are kept"
    assert path.read_text() == '{"step": 1}\n'


def test_unreadable_directory_is_a_write_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        with pytest.raises(WriteError, match=r"ro/x.json: Permission denied; no x.json was written"):
            atomic_write_json(tmp_path / "ro" / "x.json", {})
    finally:
        (tmp_path / "ro").chmod(0o700)


# -- permissions: what a plain open() gives, whatever mkstemp would ------------------------------------------------
@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path, umask):
    plain = tmp_path / "plain"
    open(plain, "w").close()
    expect = 0o666 & ~umask
    assert _mode(plain) == expect
    for name, write in [("a.json", lambda p: atomic_write_json(p, {})), ("b.txt", lambda p: atomic_write_text(p, "x")),
                        ("c.png", lambda p: atomic_write_bytes(p, b"x")),
                        ("d.pt", lambda p: atomic_torch_save(p, {"w": torch.zeros(2)})),
                        ("e.jsonl", lambda p: append_jsonl(p, {"step": 1}))]:
        write(tmp_path / name)
        assert _mode(tmp_path / name) == expect, name
        os.chmod(tmp_path / name, 0o640)  # a mode the user chose survives a rewrite, as with open()
        write(tmp_path / name)
        assert _mode(tmp_path / name) == 0o640, name
