"""The run directory: resolved config, metrics (JSON lines), summary, checkpoints and best weights."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import append_jsonl, atomic_write_json, atomic_write_text


class RunDir:
    """Layout: config.json, metrics.jsonl, summary.json, checkpoints/last.pt, checkpoints/best.pt, and
    tensorboard/ (event files) when the run's config says `train.tensorboard`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.last_checkpoint = self.checkpoints / "last.pt"
        self.best_weights = self.checkpoints / "best.pt"
        self.tensorboard_dir = self.path / "tensorboard"
        # Whether `log` also writes TensorBoard scalars: learned from the config this run writes or reads
        # (train.tensorboard), so every writer of metrics (trainer, pipeline coordinator) follows it.
        self._tensorboard: bool | None = None
        self._scalars: Any = None  # training.tensorboard.ScalarWriter, opened on the first record
        self._purge_step: int | None = None

    def check(self, *, resume: bool, overwrite: bool = False) -> None:
        """The output-directory errors that can be found without creating anything (SedonaError).

        A resumed run needs an existing directory with a checkpoint; a fresh one refuses a directory that
        already holds a run unless `overwrite`; the nearest existing ancestor must be a writable directory.
        """
        if self.path.exists() and not self.path.is_dir():
            raise SedonaError(f"output directory {self.path} exists and is not a directory")
        if resume:
            if not self.path.is_dir():
                raise SedonaError(f"cannot resume: output directory {self.path} does not exist")
            if not self.last_checkpoint.is_file():
                raise SedonaError(f"cannot resume: no checkpoint at {self.last_checkpoint}")
            return
        if not overwrite and (self.last_checkpoint.is_file() or self.summary.is_file()):
            raise SedonaError(f"output directory {self.path} already holds a run; "
                              "pass --resume to continue it, --overwrite to replace it, or choose another --out")
        existing = self.path.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise SedonaError(f"output directory {self.path}: {existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise SedonaError(f"output directory {self.path} is not writable ({existing} is read-only)")

    def prepare(self, *, resume: bool, overwrite: bool = False) -> None:
        """Check (see `check`), create the directory and prove it is writable, before any step is taken.

        A fresh run with `overwrite` removes the previous run's files first.
        """
        self.check(resume=resume, overwrite=overwrite)
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=self.checkpoints)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise SedonaError(f"output directory {self.path} is not writable: {exc.strerror or exc}") from exc
        if not resume and overwrite:
            for path in (self.last_checkpoint, self.best_weights, self.summary, self.metrics, self.config):
                path.unlink(missing_ok=True)
            shutil.rmtree(self.tensorboard_dir, ignore_errors=True)

    def write_config(self, resolved: dict) -> None:
        """The resolved config, written before training starts."""
        atomic_write_json(self.config, resolved)
        self._tensorboard = _wants_tensorboard(resolved)

    def read_config(self) -> dict:
        """The config a previous run wrote (SedonaError when absent or malformed)."""
        if not self.path.is_dir():
            raise SedonaError(f"cannot read {self.config}: the run directory {self.path} does not exist")
        try:
            data = json.loads(self.config.read_text())
        except (OSError, ValueError) as exc:
            raise SedonaError(f"cannot read {self.config}: {exc}") from exc
        self._tensorboard = _wants_tensorboard(data)
        return data

    def log(self, record: dict) -> None:
        """Append one metrics record (and write its scalars to TensorBoard when the run asks for it)."""
        append_jsonl(self.metrics, record)
        if self._tensorboard is None:
            try:
                self._tensorboard = _wants_tensorboard(json.loads(self.config.read_text()))
            except (OSError, ValueError):
                self._tensorboard = False
        if self._tensorboard:
            if self._scalars is None:
                from sedona_runtime.training.tensorboard import ScalarWriter

                self._scalars = ScalarWriter(self.tensorboard_dir, purge_step=self._purge_step)
            self._scalars.write(record)

    def close(self) -> None:
        """Close the TensorBoard writer, if one is open (records are flushed as they are written)."""
        if self._scalars is not None:
            self._scalars.close()
            self._scalars = None

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metrics past `after_step` (a resumed run recomputes them), and any torn last line; the
        TensorBoard events past it are purged when the writer opens."""
        self._purge_step = after_step + 1
        if not self.metrics.is_file():
            return
        keep = []
        for line in self.metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if int(record.get("step", 0)) <= after_step:
                keep.append(line)
        atomic_write_text(self.metrics, "".join(f"{line}\n" for line in keep))

    def read_metrics(self) -> list[dict]:
        """All metrics records (torn lines skipped)."""
        if not self.metrics.is_file():
            return []
        out = []
        for line in self.metrics.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def write_summary(self, summary: dict) -> None:
        """The final summary."""
        atomic_write_json(self.summary, summary)


def _wants_tensorboard(config: Any) -> bool:
    train = config.get("train") if isinstance(config, dict) else None
    return bool(train.get("tensorboard")) if isinstance(train, dict) else False
