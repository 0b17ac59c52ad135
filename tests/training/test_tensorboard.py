"""TensorBoard event files hold every scalar metrics.jsonl holds, and a resumed run purges what it recomputes."""
from __future__ import annotations

import importlib.util
import json

import pytest

from _training_helpers import synthetic_cfg
from sedona_runtime.training.greedy import train
from sedona_runtime.training.tensorboard import scalars

needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="the optional tensorboard package is not installed")


def test_scalars_flatten_records_per_block():
    record = {"step": 5, "loss": [0.5, 0.25], "lr": 0.1, "time": {"forward": [1.0, 2.0]}, "note": "x",
              "blocks": [{"busy_frac": 0.5, "memory_kind": "process_rss", "ok": True}], "val_error": None}
    assert dict(scalars(record)) == {"loss/block1": 0.5, "loss/block2": 0.25, "lr": 0.1, "time/forward/block1": 1.0,
                                     "time/forward/block2": 2.0, "blocks/block1/busy_frac": 0.5}


@needs_tensorboard
def test_event_files_hold_every_metrics_scalar(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(synthetic_cfg(out, tensorboard=True))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    want = {(tag, r["step"]): value for r in records for tag, value in scalars(r)}
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    got = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    assert set(got) == set(want)  # train records (loss, lr, timings) and validation records (per-block errors)
    assert all(got[k] == pytest.approx(v, rel=1e-6) for k, v in want.items())  # stored as float32
    assert ("val_block_top1_error/block2", 6) in got


@needs_tensorboard
def test_resumed_run_purges_the_steps_it_recomputes(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sedona_runtime.training.display import Reporter

    class StopAt(Reporter):
        def step(self, progress):
            if progress.step == 3:
                raise KeyboardInterrupt

    from sedona_runtime.utils.interrupt import Interrupted

    out = tmp_path / "run"
    with pytest.raises(Interrupted):  # stopped at once during step 3: step 2's checkpoint is kept
        train(synthetic_cfg(out, tensorboard=True), reporter=StopAt())
    train(synthetic_cfg(out, tensorboard=True), resume=True)  # continues from step 2's checkpoint
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("lr")] == [1, 2, 3, 4, 5, 6]  # step 3 once, not twice


def test_tensorboard_without_the_package_is_one_clear_line(monkeypatch, tmp_path):
    from sedona_runtime.training.config import resolve_defaults
    from sedona_runtime.utils.errors import SedonaError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(SedonaError, match=r"pip install 'sedona-runtime\[tensorboard\]'"):
        resolve_defaults(synthetic_cfg(tmp_path, tensorboard=True))
