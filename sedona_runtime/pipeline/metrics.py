"""Per-block runtime counters: throughput, busy and waiting time, queue depth, loss."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


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
    memory_kind: str = ""       # what peak_memory is: "process_rss" (CPU block) or "cuda_max_allocated"
    peak_reserved: int = 0      # CUDA: peak bytes held by the caching allocator (0 on CPU)
    total_busy_s: float = 0.0
    total_wait_in_s: float = 0.0
    total_wait_out_s: float = 0.0
    total_transfer_s: float = 0.0   # sending: copying to host and handing the item to the transport
    queue_depth_mean: float = 0.0   # mean input-queue depth seen at each get, over the whole run
    phase_s: dict = field(default_factory=dict)  # forward/head/backward/optimizer seconds summed over the run
    phase_steps: int = 0            # steps summed into phase_s

    def to_dict(self) -> dict:
        return asdict(self)


class BlockMeter:
    """Accumulates a block's timings; `report()` closes an interval and returns its BlockStats."""

    def __init__(self, start_step: int = 0) -> None:
        self.stats = BlockStats(step=start_step)
        self._t0 = time.perf_counter()
        self._steps0 = start_step
        self._samples = 0
        self._busy = self._wait_in = self._wait_out = self._transfer = 0.0
        self._depth_sum, self._gets = 0, 0
        self._loss: Any = None

    def waited_in(self, seconds: float, depth: int) -> None:
        self._wait_in += seconds
        self.stats.queue_depth = depth
        self._depth_sum += depth
        self._gets += 1

    def waited_out(self, seconds: float, transfer: float = 0.0) -> None:
        """`seconds` blocked on the next block (backpressure), `transfer` spent sending."""
        self._wait_out += seconds
        self._transfer += transfer

    def trained(self, seconds: float, loss: Any, samples: int, step: int,
                phases: dict[str, float] | None = None, phase_steps: int | None = None) -> None:
        """One training step: `seconds` busy, its `loss` (a float, a 0-dim tensor, or a callable giving a
        float, read at `report`),
        `phases` summed over `phase_steps` steps (default: 1 when phases are given)."""
        self._busy += seconds
        for k, v in (phases or {}).items():
            self.stats.phase_s[k] = self.stats.phase_s.get(k, 0.0) + v
        self.stats.phase_steps += phase_steps if phase_steps is not None else (1 if phases else 0)
        self._samples += samples
        self._loss = loss
        self.stats.step = step

    def report(self, peak_memory: int | dict = 0) -> BlockStats:
        """Close the interval: its BlockStats. `peak_memory`: bytes, or {"peak": bytes, "reserved": bytes}."""
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
        s.total_transfer_s += self._transfer
        s.queue_depth_mean = self._depth_sum / max(1, self._gets)
        if self._loss is not None:
            s.loss = float(self._loss() if callable(self._loss) else self._loss)
        if isinstance(peak_memory, dict):
            s.peak_memory, s.peak_reserved = int(peak_memory["peak"]), int(peak_memory.get("reserved", 0))
        else:
            s.peak_memory = int(peak_memory)
        out = BlockStats(**asdict(s))
        self._t0, self._steps0, self._samples = now, s.step, 0
        self._busy = self._wait_in = self._wait_out = self._transfer = 0.0
        return out
