"""Per-phase timing of a block's training step that never makes the host wait for the device."""
from __future__ import annotations

import collections
import time
from typing import Any

import torch

PHASES = ("forward", "head", "backward", "optimizer")


class PhaseClock:
    """Times the phases of every step: `start()`, then `mark(phase)` after each phase, then `harvest()`.

    CPU: host clock readings, so `harvest()` returns this step's phases. CUDA: an event is recorded on
    the current stream at every mark, and `harvest()` returns the phases of the earlier steps whose
    last event has completed by now (read without waiting: `Event.query`), so timing costs a few
    event records per step and no synchronisation; at most `max_pending` steps wait to be read (older
    ones are dropped from the timings, never from training).
    """

    def __init__(self, device: torch.device, max_pending: int = 64) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.max_pending = max_pending
        self._marks: list[tuple[str, Any]] = []
        self._pending: collections.deque = collections.deque()

    def _now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def start(self) -> None:
        self._marks = [("start", self._now())]

    def mark(self, phase: str) -> Any:
        """Close `phase`; the CUDA event recorded (a producer can make other streams wait for it), or None."""
        now = self._now()
        self._marks.append((phase, now))
        return now if self.cuda else None

    def harvest(self) -> tuple[dict[str, float], int, float | None]:
        """(seconds per phase summed over the steps read now, how many steps, their device seconds or None)."""
        marks, self._marks = self._marks, []
        if not self.cuda:
            return {name: b - a for (_, a), (name, b) in zip(marks, marks[1:])}, 1, None
        self._pending.append(marks)
        while len(self._pending) > self.max_pending:
            self._pending.popleft()
        sums: dict[str, float] = {}
        steps, total = 0, 0.0
        while self._pending and self._pending[0][-1][1].query():
            done = self._pending.popleft()
            for (_, a), (name, b) in zip(done, done[1:]):
                sec = a.elapsed_time(b) / 1e3  # elapsed_time is in milliseconds
                sums[name] = sums.get(name, 0.0) + sec
                total += sec
            steps += 1
        return sums, steps, total
