"""`./run CMD` runs CMD in the project's environment and in the caller's working directory."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fake_repo(tmp_path: Path) -> Path:
    """A copy of `run` next to a ready-looking .venv (its stamp matches), so nothing is installed."""
    repo = tmp_path / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    shutil.copy2(ROOT / "run", repo / "run")
    for name in ("requirements-dev.txt", "setup.py"):
        shutil.copy2(ROOT / name, repo / name)
    python = repo / ".venv" / "bin" / "python"
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o755)
    digest = hashlib.sha256((repo / "requirements-dev.txt").read_bytes() + (repo / "setup.py").read_bytes())
    (repo / ".venv" / ".requirements.sha").write_text(digest.hexdigest() + "\n")
    return repo


def test_run_keeps_the_callers_working_directory(tmp_path):
    repo = _fake_repo(tmp_path)
    elsewhere = tmp_path / "user"
    elsewhere.mkdir()
    out = subprocess.run([str(repo / "run"), "sh", "-c", 'echo "$PWD"; echo "$VIRTUAL_ENV"; command -v python'],
                         cwd=elsewhere, capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    assert out == [str(elsewhere), str(repo / ".venv"), str(repo / ".venv" / "bin" / "python")]
    # From the repository root (as the README and .ci/run use it) the command runs there.
    assert subprocess.run(["./run", "pwd"], cwd=repo, capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip() == str(repo)


def test_run_without_a_command_is_a_usage_line(tmp_path):
    repo = _fake_repo(tmp_path)
    res = subprocess.run([str(repo / "run")], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and res.stderr.startswith("usage: ./run COMMAND") and os.linesep not in res.stderr.strip()
