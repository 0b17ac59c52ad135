"""Atomic writes: the new content or the old one, never a half-written file or a stray temp file."""
from __future__ import annotations

import os

import pytest

from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_write_bytes


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
