"""The coordinator's view of the blocks: drains the reports inbox and records failures by severity."""
from __future__ import annotations

import threading
import time
from collections import defaultdict

from sedona_runtime.pipeline.channel import Aborted, ChannelTimeout, EndOfStream, PeerError
from sedona_runtime.pipeline.messages import Report
from sedona_runtime.pipeline.channel import RecvChannel
from sedona_runtime.pipeline.eval_rounds import EvalRounds

# When several things go wrong at once, the root cause is reported: a process killed by a signal beats
# a block's own error (an exception, or one of its bounded waits timing out), which beats a process
# that merely exited with an error code (it exits after reporting its error), which beats a missed
# heartbeat, which beats the channel errors they cause.
DIED, RAISED, EXITED, SILENT, CHANNEL = 0, 1, 2, 3, 4
_GRACE_S = 0.5  # after the first failure, wait this long for a more telling one


class Collector:
    """Thread-safe store of what the blocks reported, fed by a thread draining the inbox."""

    def __init__(self, inbox: RecvChannel, blocks: int, processes: int | None = None) -> None:
        # `processes`: K*R with replicas; `ready` and `finals` hold every process (replica r > 0 keyed
        # (block, r)), the per-step tables replica 0's K reports.
        self.inbox, self.K = inbox, blocks
        self.processes = processes or blocks
        self.lock = threading.Condition()
        self.metrics: dict[int, dict] = {}                       # latest stats per block
        self.metrics_by_step: dict[int, dict[int, dict]] = defaultdict(dict)
        self.saved: dict[int, set[int]] = defaultdict(set)
        self.candidates: dict[int, set[int]] = defaultdict(set)   # step -> blocks that wrote their weights
        self.rounds = EvalRounds(blocks)                             # evaluation logits, counted as they come
        self.ready: set = set()                                   # block processes built and connected
        self.last_report = time.monotonic()                       # when anything last arrived (progress)
        self.finals: dict[int, dict] = {}
        self.final_steps: dict[int, int] = {}
        self.timelines: dict[int, list] = {}                     # block -> [(step, start, end)] when asked
        self.failures: list[tuple[int, float, str]] = []
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="collector", daemon=True)

    def start(self) -> "Collector":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._quit.set()
        self._thread.join(2.0)

    def fail(self, severity: int, message: str) -> None:
        with self.lock:
            self.failures.append((severity, time.monotonic(), message))
            self.lock.notify_all()

    def failure(self, extra: tuple[int, str] | None = None) -> str | None:
        """The root-cause message (also weighing `extra`) once the grace period after the first failure passed."""
        with self.lock:
            failures = list(self.failures)
        if extra is not None:
            failures.append((extra[0], time.monotonic() - _GRACE_S, extra[1]))
        if not failures:
            return None
        first = min(t for _, t, _ in failures)
        if time.monotonic() - first < _GRACE_S:
            return None
        return min(failures, key=lambda f: (f[0], f[1]))[2]

    def failed(self) -> bool:
        with self.lock:
            return bool(self.failures)

    def _drain(self) -> None:
        while not self._quit.is_set():
            try:
                report: Report = self.inbox.get(0.2)
            except ChannelTimeout:
                continue
            except (Aborted, EndOfStream):
                return
            except PeerError as exc:  # a block's own error, or its transport's (a symptom: ranked below)
                self.fail(CHANNEL if exc.channel else RAISED, f"{exc.origin} failed: {exc.message}")
                continue
            self._record(report)

    def _record(self, r: Report) -> None:
        with self.lock:
            self.last_report = time.monotonic()
            who = r.who
            if r.kind == "ready":
                self.ready.add(who)
            elif r.kind == "metrics":
                self.metrics[r.block] = r.data
                self.metrics_by_step[r.step][r.block] = r.data
            elif r.kind == "saved":
                self.saved[r.step].add(r.block)
            elif r.kind == "candidate":
                self.candidates[r.step].add(r.block)
            elif r.kind == "logits":
                self.rounds.add(r.block, r.step, r.data)
            elif r.kind == "final":
                self.finals[who] = r.data
                self.final_steps[who] = r.step
                if "timeline" in r.extra and r.replica == 0:  # replica 0's (benchmarks)
                    self.timelines[r.block] = r.extra["timeline"]
            self.lock.notify_all()

    # -- queries (all under the lock) ---------------------------------------------------------------
    def pop_complete(self, table: dict, step: int) -> dict | None:
        with self.lock:
            if len(table.get(step, ())) == self.K:
                return table.pop(step)
            return None
