"""The machine's other load during a measurement: /proc/stat's busy CPU time minus this benchmark's own.

The development machine is shared; a repetition during which other processes kept the cores busy is
flagged as disturbed, and medians are taken over the undisturbed ones when there are enough.
"""
from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

# More than this many cores' worth of other work during a run marks it disturbed: a fifth of a core is
# about what the idle machine's own housekeeping never reaches, and enough to slow a one-core block.
DISTURBED_CORES = 0.2
T = TypeVar("T")


def parse_proc_stat(text: str) -> float:
    """Busy seconds of all CPUs from /proc/stat's first line (user nice system idle iowait irq softirq steal)."""
    fields = text.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError("not a /proc/stat text")
    values = [int(v) for v in fields[1:9]]
    busy = values[0] + values[1] + values[2] + values[5] + values[6] + values[7]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def busy_s() -> float:
    with open("/proc/stat") as fh:
        return parse_proc_stat(fh.read())


def own_s() -> float:
    """CPU seconds of this process and of its children (and theirs) that have been waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


@dataclass
class Load:
    """Other processes' CPU use during one run, in cores (busy seconds / wall seconds)."""

    wall_s: float
    machine_cores: float
    own_cores: float

    @property
    def other_cores(self) -> float:
        return max(0.0, self.machine_cores - self.own_cores)

    @property
    def disturbed(self) -> bool:
        return self.other_cores > DISTURBED_CORES

    def to_dict(self) -> dict[str, Any]:
        return {"wall_s": self.wall_s, "machine_cores": self.machine_cores, "own_cores": self.own_cores,
                "other_cores": self.other_cores, "disturbed": self.disturbed}


def load_between(start: tuple[float, float, float], end: tuple[float, float, float]) -> Load:
    """From two (perf_counter, busy_s, own_s) readings."""
    wall = max(1e-9, end[0] - start[0])
    return Load(wall, (end[1] - start[1]) / wall, (end[2] - start[2]) / wall)


def probed(run: Callable[[], T]) -> tuple[T, Load]:
    """Call `run` (which must wait for every process it starts) and measure the others' load meanwhile."""
    start = (time.perf_counter(), busy_s(), own_s())
    value = run()
    return value, load_between(start, (time.perf_counter(), busy_s(), own_s()))


def robust_median(values: Sequence[float], disturbed: Sequence[bool]) -> tuple[float, bool]:
    """(median, over undisturbed only): the undisturbed samples when at least two and half of them are."""
    quiet = [v for v, d in zip(values, disturbed) if not d]
    if len(quiet) >= max(2, (len(values) + 1) // 2):
        return statistics.median(quiet), True
    return statistics.median(values), False
