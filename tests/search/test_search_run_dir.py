"""The search owns its run directory like the trainer: created and locked only once its settings and data
are valid, a second search into it refused, a finished one left as it is."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sedona_runtime.data.config import DataConfig
from sedona_runtime.search.runner import SearchRunner
from sedona_runtime.training.run_dir import RunFinished
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.run_lock import RunLock, RunLocked

from test_search_runner import tiny_config


def test_bad_data_leaves_no_run_directory(tmp_path: Path) -> None:
    cfg = tiny_config()
    cfg.data = DataConfig(dataset="cifar10", data_dir=str(tmp_path / "none"), val_fraction=0.4, batch_size=8)
    with pytest.raises(SedonaError, match="cifar10 data directory not found"):
        SearchRunner(cfg, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_a_live_search_is_not_joined_and_a_finished_one_not_resumed(tmp_path: Path) -> None:
    out = tmp_path / "s"
    runner = SearchRunner(tiny_config(pretrain_steps=2, search_steps=1), out)
    assert (out / "run.lock").exists()  # held from the moment the directory is prepared ...
    with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
        SearchRunner(tiny_config(), out, overwrite=True)
    assert runner.run() is not None
    assert not (out / "run.lock").exists()  # ... until the run ends
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RunFinished, match="has already finished"):
        SearchRunner(tiny_config(pretrain_steps=2, search_steps=1), out, resume=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with RunLock(out), pytest.raises(RunLocked):
        SearchRunner(tiny_config(), out, overwrite=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
