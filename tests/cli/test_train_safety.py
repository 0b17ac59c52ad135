"""Two runs into one --out, as users start them: the second is refused (also with --overwrite) naming the
first; Ctrl-C and SIGTERM save the last completed step, and --resume continues from it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

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


def _one_line_error(args: list[str]) -> str:
    res = subprocess.run(_cli(args), capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and len(res.stderr.splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    return res.stderr.strip()


def _stop(proc: subprocess.Popen, sig: int, log: Path) -> str:
    proc.send_signal(sig)
    proc.wait(60)
    assert proc.returncode == 128 + sig, log.read_text()
    return log.read_text()


def test_second_run_is_refused_and_signals_save_the_last_step(tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "a.log"
    a = _start(LONG + ["--out", str(out)], log)
    try:
        _wait_for(out / "checkpoints" / "last.pt", a, log)
        config = (out / "config.json").read_text()
        for extra in ([], ["--seed", "2", "--overwrite"]):
            err = _one_line_error(LONG + ["--out", str(out)] + extra)
            assert err.startswith(f"error: run directory {out} is in use by another run: pid {a.pid} on host "
                                  f"{socket.gethostname()} since "), err
            assert "sedona_runtime.train" in err and err.endswith("or choose another --out")
        assert (out / "config.json").read_text() == config and (out / "checkpoints" / "last.pt").exists()

        text = _stop(a, signal.SIGINT, log)
        step = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
        assert f"Ctrl-C: stopping after step {step} and saving a checkpoint there" in text
        assert text.strip().splitlines()[-1] == (
            f"interrupted (SIGINT) after step {step} of 1000000: checkpoint of step {step} saved in "
            f"{out / 'checkpoints' / 'last.pt'}; continue with --resume --out {out}")
        assert "Traceback" not in text and not (out / "run.lock").exists()

        # --resume continues from that step; SIGTERM (a scheduler's stop) saves likewise.
        a = _start(["--resume", "--out", str(out), "--plain"], log)
        deadline = time.monotonic() + 120
        while not any("resuming at step" in line for line in log.read_text().splitlines()):
            assert a.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert f"resuming at step {step}" in log.read_text()
        time.sleep(0.5)
        text = _stop(a, signal.SIGTERM, log)
        again = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
        assert again > step and text.strip().splitlines()[-1].startswith(f"interrupted (SIGTERM) after step {again} ")
        assert json.loads((out / "config.json").read_text()) == json.loads(config)
    finally:
        a.kill()
        a.wait(30)
