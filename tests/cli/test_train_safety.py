"""Two runs into one --out, as users start them: the second is refused (also with --overwrite) naming the
first; Ctrl-C saves the last completed step (SIGTERM and the resumed run: tests/training/test_greedy.py)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sedona_runtime.cli.train import main
from sedona_runtime.training.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[2]
# 8x8 digits, a quarter-width small model: steps of milliseconds, a checkpoint every 50 of them.
LONG = ["--dataset", "digits", "--image-size", "8", "--width", "0.25", "--batch-size", "16", "--device", "cpu",
        "--eval-interval", "0", "--checkpoint-interval", "50", "--steps", "1000000", "--plain"]
pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(240)]


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "sedona_runtime.train", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:  # a file, not a pipe: a full pipe would stall the run
        return subprocess.Popen(_cli(args), stdout=fh, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{path} did not appear: {log.read_text()}"
        time.sleep(0.2)


def _one_line_error(capsys, args: list[str]) -> str:
    """The second run, started here in the test's own process (the first one is a separate process)."""
    rc = main(args)
    captured = capsys.readouterr()
    assert rc == 2 and captured.err.startswith("error: ") and len(captured.err.splitlines()) == 1, captured.err
    return captured.err.strip()


def test_second_run_is_refused_and_ctrl_c_saves_the_last_step(tmp_path, capsys):
    out = tmp_path / "run"
    log = tmp_path / "a.log"
    a = _start(LONG + ["--out", str(out)], log)
    try:
        _wait_for(out / "checkpoints" / "last.pt", a, log)
        config = (out / "config.json").read_text()
        for extra in ([], ["--seed", "2", "--overwrite"], ["--resume"]):
            err = _one_line_error(capsys, LONG + ["--out", str(out)] + extra)
            assert err.startswith(f"error: run directory {out} is in use by another run: pid {a.pid} on host "
                                  f"{socket.gethostname()} since "), err
            assert "sedona_runtime.train" in err and err.endswith("or choose another --out")
        assert (out / "config.json").read_text() == config and (out / "checkpoints" / "last.pt").exists()

        a.send_signal(signal.SIGINT)
        a.wait(60)
        text = log.read_text()
        assert a.returncode == 130, text
        step = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
        assert f"Ctrl-C: stopping after step {step} and saving a checkpoint there" in text
        assert text.strip().splitlines()[-1] == (
            f"interrupted (SIGINT) after step {step} of 1000000: checkpoint of step {step} saved in "
            f"{out / 'checkpoints' / 'last.pt'}; continue with --resume --out {out}")
        assert "Traceback" not in text and not (out / "run.lock").exists()
        assert (out / "config.json").read_text() == config
        RunDir(out).check(resume=True)  # free again, and resumable from that step
    finally:
        a.kill()
        a.wait(30)
