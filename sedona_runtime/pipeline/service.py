"""The coordinator's bookkeeping on a thread of its own: counted evaluation rounds, best-weights promotion,
checkpoint commits in step order and metrics, so that a put blocked by backpressure holds none of them up."""
from __future__ import annotations

import logging
import threading
import traceback
from typing import Callable, Iterable

from sedona_runtime.pipeline import checkpoints as ckpt
from sedona_runtime.pipeline.collector import Collector
from sedona_runtime.pipeline.protocol import short
from sedona_runtime.training.schedule import Schedule
from sedona_runtime.utils.errors import SedonaError

log = logging.getLogger(__name__)

POLL_S = 0.05  # a pass at least this often; every report wakes the thread at once


class Service:
    """Turns what the blocks reported (the Collector's tables) into the run directory's records.

    Each pass, in this order: count finished evaluation rounds (validation: log it, track the best; test: keep
    it); settle each counted validation whose candidate weights every block wrote (promote the best, drop the
    others); commit every checkpoint all K blocks saved, in step order, a step only once every validation of
    this run at or before it is settled (so a commit's best_val/best_step include that step's own validation
    and name promoted weights, as the trainer's checkpoint does); log every step's metrics all K reported,
    with the schedule's learning rate.

    While the thread runs it is the only writer of the run directory (metrics.jsonl, the commit record, the
    best weights); the coordinator writes the summary only after `stop`. An exception on the thread is kept
    as one line (`error`) and handed to `on_error` (the coordinator stops the run with it); it is never lost.
    """

    def __init__(self, collector: Collector, run_dir, blocks: int, schedule: Schedule, reporter, *,
                 validations: Iterable[int], best_val: float | None = None, best_step: int | None = None,
                 fed: Callable[[], int] = lambda: 0, on_error: Callable[[str], None] = lambda line: None) -> None:
        self.c, self.run_dir, self.K, self.schedule, self.reporter = collector, run_dir, blocks, schedule, reporter
        self.unsettled = set(validations)   # validation steps of this run not yet counted and promoted/dropped
        self.counted: dict[int, float] = {}  # counted validation step -> top-1 error, until its candidate is settled
        self.best_val, self.best_step = best_val, best_step
        self.last_val = None                 # EvalResult of the last validation
        self.test = None                     # EvalResult of the test round
        self.committed: int | None = None    # step of the last commit this run made
        self.fed, self.on_error = fed, on_error
        self.error: str | None = None
        self._quit = threading.Event()
        self._last_pass = False
        self._thread = threading.Thread(target=self._run, name="coordinator-service", daemon=True)

    # -- the thread ---------------------------------------------------------------------------------------
    def start(self) -> "Service":
        self._thread.start()
        return self

    def stop(self, timeout: float, last_pass: bool = False) -> bool:
        """Stop the thread (after one more pass over everything reported so far when `last_pass`) and wait for
        it, at most `timeout` seconds; whether it ended. Idempotent."""
        self._last_pass = self._last_pass or last_pass
        self._quit.set()
        with self.c.lock:
            self.c.lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._quit.is_set():
                self.run_pass()
                with self.c.lock:
                    if not self._quit.is_set():
                        self.c.lock.wait(POLL_S)
            if self._last_pass:
                self.run_pass()
        except BaseException as exc:  # noqa: BLE001 - kept as one line and surfaced by the coordinator
            if isinstance(exc, SedonaError):
                self.error = str(exc)
            else:
                log.error("the coordinator's bookkeeping failed:\n%s", traceback.format_exc())
                self.error = f"the coordinator's bookkeeping failed: {type(exc).__name__}: {short(exc)}"
            self.on_error(self.error)
            with self.c.lock:
                self.c.lock.notify_all()

    # -- one pass -----------------------------------------------------------------------------------------
    def run_pass(self) -> None:
        """Do everything the reports so far allow (see the class docstring for the order)."""
        c = self.c
        with c.lock:
            finished = c.rounds.pop_done()
        for split, step, result in finished:
            if split == "val":
                self.validated(step, result)
            else:
                self.test = result
        for step in sorted(self.counted):  # a counted validation whose blocks all wrote their weights
            if c.pop_complete(c.candidates, step) is not None:
                err = self.counted.pop(step)
                if step == self.best_step:
                    ckpt.promote_best(self.run_dir.checkpoints, step, self.K, err)
                else:
                    ckpt.drop_candidate(self.run_dir.checkpoints, step)
                self.unsettled.discard(step)
        with c.lock:
            saved = sorted(s for s, blocks in c.saved.items() if len(blocks) == self.K)
        for step in saved:  # in step order: a commit deletes the older steps' files
            if any(v <= step for v in self.unsettled):
                break
            c.pop_complete(c.saved, step)
            self.commit(step)
        with c.lock:
            steps = sorted(c.metrics_by_step)
        for step in steps:
            stats = c.pop_complete(c.metrics_by_step, step)
            if stats is not None:
                self.log_metrics(step, stats)

    def validated(self, step: int, result) -> None:
        """A validation round is counted: log it, track the best (its weights are promoted once written)."""
        from sedona_runtime.training.evaluate import eval_record

        self.last_val = result
        err = result.top1_error
        self.run_dir.log({"step": step, **eval_record(result, "val")})
        if self.best_val is None or err < self.best_val:
            self.best_val, self.best_step = err, step
        self.counted[step] = err
        self.reporter.validated(step, err, self.best_val)

    def commit(self, step: int) -> None:
        ckpt.commit(self.run_dir.checkpoints, step, self.K, {"best_val": self.best_val, "best_step": self.best_step})
        self.committed = step

    def log_metrics(self, step: int, stats: dict[int, dict]) -> None:
        """Every block's stats after `step` steps: one record, with the learning rate that step trained with."""
        ordered = [stats[i] for i in range(1, self.K + 1)]
        rate = min(s["samples_per_s"] for s in ordered)  # a pipeline runs at its slowest block's pace
        self.run_dir.log({"step": step, "loss": [s["loss"] for s in ordered], "lr": self.schedule.lr(step - 1),
                          "samples_per_s": rate, "blocks": ordered})
        with self.c.lock:
            latest = dict(self.c.metrics)
        self.reporter.blocks(self.fed(), self.schedule.total, latest)
