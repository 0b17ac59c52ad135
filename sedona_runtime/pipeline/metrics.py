"""Per-block runtime counters: throughput, busy and waiting time, queue depth, loss."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass


@dataclass
class BlockStats:
    """One reporting interval of one block (times in seconds, rates per second)."""

    step: int = 0               # steps completed so far
    loss: float = float("nan")  # loss of the last step
    steps_per_s: float = 0.0
    samples_per_s: float = 0.0
    busy_s: float = 0.0         # inside train_step
    wait_in_s: float = 0.0      # waiting for the input queue (starved)
    wait_out_s: float = 0.0     # waiting for the next block to accept (backpressure)
    queue_depth: int = 0        # items in this block's input queue at the last get
    busy_frac: float = 0.0      # busy / wall over the interval
    peak_memory: int = 0
    total_busy_s: float = 0.0
    total_wait_in_s: float = 0.0
    total_wait_out_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class BlockMeter:
    """Accumulates a block's timings; `report()` closes an interval and returns its BlockStats."""

    def __init__(self, start_step: int = 0) -> None:
        self.stats = BlockStats(step=start_step)
        self._t0 = time.perf_counter()
        self._steps0 = start_step
        self._samples = 0
        self._busy = self._wait_in = self._wait_out = 0.0

    def waited_in(self, seconds: float, depth: int) -> None:
        self._wait_in += seconds
        self.stats.queue_depth = depth

    def waited_out(self, seconds: float) -> None:
        self._wait_out += seconds

    def trained(self, seconds: float, loss: float, samples: int, step: int) -> None:
        self._busy += seconds
        self._samples += samples
        self.stats.loss = loss
        self.stats.step = step

    def report(self, peak_memory: int = 0) -> BlockStats:
        now = time.perf_counter()
        dt = max(now - self._t0, 1e-9)
        s = self.stats
        if s.step > self._steps0:  # an interval without steps (the end-of-stream report) keeps the last rates
            s.steps_per_s = (s.step - self._steps0) / dt
            s.samples_per_s = self._samples / dt
            s.busy_s, s.wait_in_s, s.wait_out_s = self._busy, self._wait_in, self._wait_out
            s.busy_frac = self._busy / dt
        s.total_busy_s += self._busy
        s.total_wait_in_s += self._wait_in
        s.total_wait_out_s += self._wait_out
        s.peak_memory = peak_memory
        out = BlockStats(**asdict(s))
        self._t0, self._steps0, self._samples = now, s.step, 0
        self._busy = self._wait_in = self._wait_out = 0.0
        return out
