"""The run directory: resolved config, metrics (JSON lines), summary, checkpoints and best weights; its lock."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import append_jsonl, atomic_write_json, atomic_write_text
from sedona_runtime.utils.run_lock import LOCK_NAME, RunLock


class RunFinished(SedonaError):
    """`--resume` of a run that has finished: nothing to do, every file is left as it is (a notice, exit 0)."""

    exit_code = 0
    label = ""


class RunDir:
    """Layout: config.json, metrics.jsonl, summary.json, checkpoints/last.pt, checkpoints/best.pt, run.lock,
    and tensorboard/ (event files) when the run's config says `train.tensorboard`.

    One run owns the directory at a time: `prepare` takes its lock (utils.run_lock) and returns it held.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.last_checkpoint = self.checkpoints / "last.pt"
        self.best_weights = self.checkpoints / "best.pt"
        self.lock_file = self.path / LOCK_NAME
        self.tensorboard_dir = self.path / "tensorboard"
        # Whether `log` also writes TensorBoard scalars: learned from the config this run writes or reads
        # (train.tensorboard), so every writer of metrics (trainer, pipeline coordinator) follows it.
        self._tensorboard: bool | None = None
        self._scalars: Any = None  # training.tensorboard.ScalarWriter, opened on the first record
        self._purge_step: int | None = None

    def lock(self) -> RunLock:
        """The directory's lock, not yet taken: `with run.lock():` owns the directory for the block."""
        return RunLock(self.path)

    def finished(self) -> dict | None:
        """The summary of a finished run (its summary.json, written last), None while it is not finished."""
        if not self.summary.is_file():
            return None
        try:
            summary = json.loads(self.summary.read_text())
        except (OSError, ValueError) as exc:
            raise SedonaError(f"cannot read {self.summary}: {exc}") from None
        return summary if isinstance(summary, dict) else {}

    def check_not_finished(self) -> None:
        """RunFinished when the run has finished (for `--resume`): says so and where its results are."""
        summary = self.finished()
        if summary is not None:
            n = summary.get("steps")
            steps = f"{n} step{'' if n == 1 else 's'}, " if isinstance(n, int) else ""
            raise RunFinished(f"run {self.path} has already finished ({steps}results in {self.summary}); nothing "
                              "to resume, every file is left as it is (to train it again pass --overwrite, or "
                              "choose another --out)")

    def check(self, *, resume: bool, overwrite: bool = False, checkpoint: Path | None = None) -> None:
        """The output-directory errors that can be found without creating anything (SedonaError).

        Another live run holding the directory is RunLocked (naming it), also with `overwrite`. A resumed
        run needs an existing directory with a checkpoint (a finished one is RunFinished); a fresh one
        refuses a directory that already holds a run unless `overwrite`; the nearest existing ancestor
        must be a writable directory. `checkpoint` is the file a resume continues from (default
        checkpoints/last.pt; the pipeline passes its commit record).
        """
        if self.path.exists() and not self.path.is_dir():
            raise SedonaError(f"output directory {self.path} exists and is not a directory")
        if self.path.is_dir():
            self.lock().check()
        self._check_files(resume, overwrite, checkpoint or self.last_checkpoint)

    def _check_files(self, resume: bool, overwrite: bool, checkpoint: Path) -> None:
        if resume:
            if not self.path.is_dir():
                raise SedonaError(f"cannot resume: output directory {self.path} does not exist")
            self.check_not_finished()
            if not checkpoint.is_file():
                raise SedonaError(f"cannot resume: no checkpoint at {checkpoint}{self._other_kind(checkpoint)}")
            return
        if not overwrite and self.summary.is_file():
            raise SedonaError(f"output directory {self.path} already holds a run, which has finished; "
                              "pass --overwrite to replace it, or choose another --out")
        if not overwrite and checkpoint.is_file():
            raise SedonaError(f"output directory {self.path} already holds a run; "
                              "pass --resume to continue it, --overwrite to replace it, or choose another --out")
        existing = self.path.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise SedonaError(f"output directory {self.path}: {existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise SedonaError(f"output directory {self.path} is not writable ({existing} is read-only)")

    def _other_kind(self, checkpoint: Path) -> str:
        """When a resume looks for the other kind of run's checkpoint: which run it is and its command."""
        from sedona_runtime.pipeline.checkpoints import COMMIT

        pipeline = self.checkpoints / COMMIT
        if checkpoint != pipeline and pipeline.is_file():
            return (f"; {self.path} is a pipeline run: continue it with python launch/greedy.py --resume "
                    f"--out {self.path}")
        if checkpoint == pipeline and self.last_checkpoint.is_file():
            return (f"; {self.path} is a single-process run: continue it with python -m sedona_runtime.train "
                    f"--resume --out {self.path}")
        return ""

    def prepare(self, *, resume: bool, overwrite: bool = False, checkpoint: Path | None = None) -> RunLock:
        """Check (see `check`), create the directory, prove it is writable and take its lock, before any
        step is taken; returns the lock, held: release it when the run ends (`with run.prepare(...):`).

        The checks are repeated once the lock is held (a run that ended meanwhile may have left results).
        A fresh run with `overwrite` then removes the previous run's files.
        """
        self.check(resume=resume, overwrite=overwrite, checkpoint=checkpoint)
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=self.checkpoints)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise SedonaError(f"output directory {self.path} is not writable: {exc.strerror or exc}") from exc
        lock = self.lock().acquire()
        try:
            self._check_files(resume, overwrite, checkpoint or self.last_checkpoint)
            if not resume and overwrite:
                for path in (self.last_checkpoint, self.best_weights, self.summary, self.metrics, self.config):
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as exc:
                        raise SedonaError(f"--overwrite: cannot remove {path}: {exc.strerror or exc}") from None
                shutil.rmtree(self.tensorboard_dir, ignore_errors=True)
                # A former run of the other kind too: a pipeline's commit record, block and best-weights
                # files (trained.load would otherwise still find them, and take the newer of two runs).
                from sedona_runtime.pipeline.checkpoints import remove_all

                remove_all(self.checkpoints)
        except BaseException:
            lock.release()
            raise
        return lock

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

    def _metrics_lines(self) -> list[str]:
        try:
            return self.metrics.read_text().splitlines()
        except OSError as exc:
            raise SedonaError(f"cannot read {self.metrics}: {exc.strerror or exc}") from None

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metrics past `after_step` (a resumed run recomputes them), and any torn last line; the
        TensorBoard events past it are purged when the writer opens."""
        self._purge_step = after_step + 1
        if not self.metrics.is_file():
            return
        keep = []
        for line in self._metrics_lines():
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
        for line in self._metrics_lines():
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
