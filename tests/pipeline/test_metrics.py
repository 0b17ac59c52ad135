"""BlockMeter: intervals, run totals, phase sums, transfer time and mean queue depth."""
from __future__ import annotations

import pytest

from sedona_runtime.pipeline.metrics import BlockMeter


def test_meter_accumulates_intervals_and_run_totals() -> None:
    m = BlockMeter(start_step=0)
    m.waited_in(0.5, depth=2)
    m.trained(1.0, loss=2.0, samples=8, step=1, phases={"forward": 0.25, "backward": 0.75})
    m.waited_out(0.125, transfer=0.0625)
    first = m.report(peak_memory=123)
    assert (first.step, first.loss, first.busy_s, first.wait_in_s, first.wait_out_s) == (1, 2.0, 1.0, 0.5, 0.125)
    assert first.peak_memory == 123 and first.queue_depth == 2

    m.waited_in(0.25, depth=4)
    m.trained(2.0, loss=1.0, samples=8, step=2, phases={"forward": 0.5, "backward": 1.5})
    m.waited_out(0.0, transfer=0.0625)
    second = m.report()
    # The interval holds only its own time; the totals hold the whole run.
    assert second.busy_s == 2.0 and second.total_busy_s == 3.0
    assert second.total_wait_in_s == 0.75 and second.total_wait_out_s == 0.125
    assert second.total_transfer_s == 0.125
    assert second.phase_s == {"forward": 0.75, "backward": 2.25} and second.phase_steps == 2
    assert second.queue_depth_mean == pytest.approx(3.0)  # mean over every get of the run: (2 + 4) / 2
    assert first.phase_s == {"forward": 0.25, "backward": 0.75}  # reports are snapshots, not shared


def test_an_interval_without_steps_keeps_the_last_rates() -> None:
    m = BlockMeter(start_step=5)
    m.trained(1.0, loss=0.5, samples=4, step=6)
    rate = m.report().steps_per_s
    assert rate > 0
    assert m.report().steps_per_s == rate
