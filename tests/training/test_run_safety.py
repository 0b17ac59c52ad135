"""The single-process trainer keeps work safe: one owner per run directory, a full disk is one line that says
which checkpoint was kept, and result files get the permissions a plain open() gives."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from _training_helpers import synthetic_cfg
from sedona_runtime.training.greedy import train
from sedona_runtime.training.run_dir import RunDir, RunFinished
from sedona_runtime.utils import io as io_mod
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.run_lock import RunLock, RunLocked


def _files(root) -> dict:
    """Every file of a run directory (but its lock) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


def test_a_live_run_is_neither_joined_nor_overwritten(tmp_path):
    out = tmp_path / "run"
    train(synthetic_cfg(out, steps=2))
    before = _files(out)
    with RunLock(out):  # another run holds the directory (here: this test)
        for kw in (dict(overwrite=True), dict(resume=True), dict()):
            with pytest.raises(RunLocked, match=f"run directory {out} is in use by another run: pid {os.getpid()}"):
                train(synthetic_cfg(out, steps=2, seed=2), **kw)
        assert _files(out) == before  # nothing deleted, config.json still seed 0's
    assert _files(out) == before


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    out = tmp_path / "run"
    train(synthetic_cfg(out, steps=2))
    before = {p: (b, os.stat(out / p).st_mtime_ns) for p, b in _files(out).items()}
    with pytest.raises(RunFinished) as info:
        train(synthetic_cfg(out, steps=2), resume=True)
    assert info.value.exit_code == 0 and "has already finished (2 steps" in str(info.value)
    assert {p: (b, os.stat(out / p).st_mtime_ns) for p, b in _files(out).items()} == before
    assert RunDir(out).finished()["steps"] == 2


@pytest.fixture
def full_disk(monkeypatch):
    """Atomic writes of the named files (after `after[name]` good ones) go to /dev/full: a real ENOSPC."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    plan: dict[str, int] = {}
    real = io_mod._open_temp

    def open_temp(path):
        fd, tmp = real(path)
        if path.name in plan:
            plan[path.name] -= 1
            if plan[path.name] < 0:
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
        return fd, tmp

    monkeypatch.setattr(io_mod, "_open_temp", open_temp)
    return plan


def test_disk_full_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(tmp_path, full_disk):
    out = tmp_path / "run"
    full_disk["last.pt"] = 1  # the checkpoint of step 2 is written, the one of step 4 hits a full disk
    with pytest.raises(SedonaError) as info:
        train(synthetic_cfg(out))
    last = out / "checkpoints" / "last.pt"
    assert str(info.value) == (f"cannot write {last}: No space left on device; the previous last.pt is kept; "
                               f"training stopped at step 4, checkpoint {last} (step 2) kept; free some space and "
                               "continue with --resume")
    assert torch.load(last, weights_only=True)["step"] == 2
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")] and not (out / "run.lock").exists()
    full_disk.clear()  # space freed: the run continues from step 2 and finishes
    assert train(synthetic_cfg(out), resume=True)["steps"] == 6


def test_disk_full_before_any_checkpoint_says_so(tmp_path, full_disk):
    out = tmp_path / "run"
    full_disk["best.pt"] = 0  # the first validation (step 2) cannot save the best weights
    with pytest.raises(SedonaError) as info:
        train(synthetic_cfg(out))
    assert str(info.value) == (f"cannot write {out / 'checkpoints' / 'best.pt'}: No space left on device; no best.pt "
                               "was written; training stopped at step 2, no checkpoint had been written")


def test_run_files_get_the_permissions_of_a_plain_open(tmp_path):
    for mask in (0o022, 0o077):
        old = os.umask(mask)
        try:
            out = tmp_path / f"run{mask:o}"
            train(synthetic_cfg(out, steps=2))
        finally:
            os.umask(old)
        modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
        assert set(modes) == {"config.json", "metrics.jsonl", "summary.json", "checkpoints/last.pt",
                              "checkpoints/best.pt"}
        assert set(modes.values()) == {0o666 & ~mask}, modes


def test_prepare_for_a_run_whose_checkpoint_is_another_file(tmp_path):
    """The pipeline resumes from its commit record, not last.pt: `checkpoint=` names the file."""
    run = RunDir(tmp_path / "run")
    commit = run.checkpoints / "pipeline.json"
    with pytest.raises(SedonaError, match=f"cannot resume: output directory {run.path} does not exist"):
        run.prepare(resume=True, checkpoint=commit)
    run.prepare(resume=False, checkpoint=commit).release()
    with pytest.raises(SedonaError, match=f"cannot resume: no checkpoint at {commit}"):
        run.prepare(resume=True, checkpoint=commit)
    commit.write_text('{"step": 4, "blocks": 2}')
    with pytest.raises(SedonaError, match="already holds a run; pass --resume"):
        run.prepare(resume=False, checkpoint=commit)
    with run.prepare(resume=True, checkpoint=commit) as lock:
        assert lock.held and run.lock_file.exists()
    assert not run.lock_file.exists()
