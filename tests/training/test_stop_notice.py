"""The "stopping after step S" notice names the step the trainer's checkpoint holds, wherever in a step the
signal comes (it once named the next step when the signal came between the step count and the stop check:
the flake of tests/cli/test_train_safety.py)."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from _training_helpers import synthetic_cfg
from sedona_runtime.training.display import Reporter
from sedona_runtime.training.greedy import train
from sedona_runtime.utils.interrupt import Interrupted


class _SignalAt(Reporter):
    """Sends this process SIGINT from the step report (after the step was counted, before the stop check)."""

    def __init__(self, at: int) -> None:
        self.at, self.notices = at, []

    def step(self, progress) -> None:
        if progress.step == self.at:
            os.kill(os.getpid(), signal.SIGINT)

    def stopping(self, step: int, signal_name: str) -> None:
        self.notices.append((step, signal_name))


def test_a_signal_after_a_step_is_counted_is_announced_for_that_step(tmp_path):
    out = tmp_path / "run"
    reporter = _SignalAt(3)
    cfg = synthetic_cfg(out, steps=50)
    cfg.log_interval, cfg.checkpoint_interval, cfg.eval_interval = 1, 0, 0
    with pytest.raises(Interrupted, match="after step 3 of 50: checkpoint of step 3 saved"):
        train(cfg, reporter=reporter)
    assert reporter.notices == [(3, "SIGINT")]
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
