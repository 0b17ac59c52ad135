"""The run-directory lock: exclusive, names its holder, stale locks taken over, other hosts refused."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sedona_runtime.training.run_dir import RunDir
from sedona_runtime.utils.run_lock import LOCK_NAME, RunLock, RunLocked

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from sedona_runtime.utils.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def _holder(directory: Path) -> subprocess.Popen:
    """A process that takes the lock of `directory` and sleeps (bounded: 60 s, killed by the test)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()  # blocks until the lock is held (or the child failed)
    assert line.strip() == "held", line
    return proc


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


def test_lock_file_names_its_holder_and_is_removed_on_release(tmp_path):
    with RunLock(tmp_path) as lock:
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
        assert info["since"] and info["command"] and lock.held
        with pytest.raises(RunLocked) as err:  # a second owner, even in this process, is refused
            RunLock(tmp_path).acquire()
        assert f"is in use by another run: pid {os.getpid()} on host {socket.gethostname()} since" in str(err.value)
        assert "wait for it to end or stop it (Ctrl-C saves a checkpoint), or choose another --out" in str(err.value)
    assert not (tmp_path / LOCK_NAME).exists() and not lock.held


def test_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with RunLock(tmp_path):
            1 / 0
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(tmp_path).acquire().release()


def test_live_holder_in_another_process_is_named_and_a_killed_one_is_stale(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunLocked) as err:
            RunLock(tmp_path).acquire()
        assert f"pid {proc.pid} on host {socket.gethostname()}" in str(err.value)
        assert err.value.holder.pid == proc.pid
        assert RunDir(tmp_path).lock().holder().pid == proc.pid
        proc.send_signal(signal.SIGKILL)  # dies without cleaning up: its lock file stays behind
        proc.wait(30)
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    assert (tmp_path / LOCK_NAME).exists() and RunLock(tmp_path).holder() is None  # stale
    with RunLock(tmp_path):  # taken over
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_stale_lock_of_a_dead_pid_and_a_torn_lock_are_taken_over(tmp_path):
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "started": 1.0, "since": "then", "command": "x"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    (tmp_path / LOCK_NAME).write_text('{"host": "')  # a crash while the lock was being written
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_lock_of_another_host_is_refused_with_what_to_do(tmp_path):
    other = {"host": "gpu-node-7", "pid": 4242, "started": None, "since": "2025-06-01 12:00:03 +0000",
             "command": "python -m sedona_runtime.train --out x"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(RunLocked) as err:
        RunLock(tmp_path).acquire()
    assert str(err.value) == (
        f"run directory {tmp_path} is locked by pid 4242 on host gpu-node-7 since 2025-06-01 12:00:03 +0000 "
        f"(python -m sedona_runtime.train --out x); from this host ({socket.gethostname()}) it cannot be checked "
        f"whether that run still goes: if it does not, delete {tmp_path / LOCK_NAME} and start again")
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == other  # untouched


def test_overwrite_of_a_live_run_is_refused_and_deletes_nothing(tmp_path):
    run = RunDir(tmp_path / "run")
    lock = run.prepare(resume=False)
    run.write_config({"seed": 1})
    run.last_checkpoint.write_bytes(b"checkpoint")
    try:
        for resume, overwrite in ((False, True), (False, False), (True, False)):
            with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
                RunDir(tmp_path / "run").prepare(resume=resume, overwrite=overwrite)
        assert run.last_checkpoint.read_bytes() == b"checkpoint" and json.loads(run.config.read_text()) == {"seed": 1}
    finally:
        lock.release()
    assert not run.lock_file.exists()


def test_probing_does_not_take_the_lock(tmp_path):
    assert RunLock(tmp_path).holder() is None and not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path):
        with pytest.raises(RunLocked):
            RunDir(tmp_path).check(resume=False)
        with pytest.raises(RunLocked):
            RunLock(tmp_path).check()
    RunLock(tmp_path).check()  # free again


def test_without_flock_the_pid_decides(tmp_path, monkeypatch):
    """File systems without flock: a live pid (same start time) holds the lock, a dead or reused one does not."""
    import sedona_runtime.utils.run_lock as run_lock

    monkeypatch.setattr(run_lock, "_flock", lambda fd: None)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": run_lock._start_time(os.getpid()),
          "since": "now", "command": "x"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(me))
    with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    for stale in ({**me, "pid": _dead_pid()}, {**me, "started": 12.0}):  # dead; pid reused by a younger process
        (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
        with RunLock(tmp_path):
            assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
