"""The one schedule: its events, fresh and resumed, and the learning rate every BlockRunner's optimizer actually uses."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from _training_helpers import LinearHead, tiny_cfg
from sedona_runtime.training.schedule import CHECKPOINT, TEST, TRAIN, VALIDATE, Event, Schedule, cosine_factor


def _walk(schedule: Schedule) -> list[tuple[str, int]]:
    return [(e.kind, e.step) for e in schedule.events()]


def test_cosine_schedule_matches_torch_cosine_annealing():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=0.001)
    for t in range(21):
        # CosineAnnealingLR uses a recursive update, ours the closed form: equal up to rounding.
        assert 0.1 * cosine_factor(t, 20, 0.01) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        ref.step()
    assert cosine_factor(50, 20, 0.01) == pytest.approx(0.01)  # stays at the final rate past the end


def test_events_in_the_trainers_order_with_intervals_that_do_and_do_not_divide_the_steps():
    cfg = tiny_cfg(steps=7, eval_interval=3, checkpoint_interval=2)
    assert _walk(Schedule(cfg)) == [
        (TRAIN, 0), (TRAIN, 1), (CHECKPOINT, 2), (TRAIN, 2), (VALIDATE, 3), (TRAIN, 3), (CHECKPOINT, 4),
        (TRAIN, 4), (TRAIN, 5), (VALIDATE, 6), (CHECKPOINT, 6), (TRAIN, 6),
        (VALIDATE, 7), (CHECKPOINT, 7), (TEST, 7)]  # nothing at 7 before the end: the final ones only
    # Resumed after 4 steps: the same events from there on; validation before checkpoint at a shared point.
    assert _walk(Schedule(cfg, start=4)) == _walk(Schedule(cfg))[7:]
    assert Schedule(cfg).events()[-3] == Event(VALIDATE, 7, final=True)
    # Dividing intervals: the points at the very end are the final ones, not repeated.
    assert _walk(Schedule(tiny_cfg(steps=4, eval_interval=2, checkpoint_interval=4)))[-4:] == [
        (TRAIN, 3), (VALIDATE, 4), (CHECKPOINT, 4), (TEST, 4)]
    # Interval 0: only at the end. A finished run resumed: the final validation, checkpoint and test only.
    assert _walk(Schedule(tiny_cfg(steps=2, eval_interval=0, checkpoint_interval=0))) == [
        (TRAIN, 0), (TRAIN, 1), (VALIDATE, 2), (CHECKPOINT, 2), (TEST, 2)]
    assert _walk(Schedule(cfg, start=7)) == [(VALIDATE, 7), (CHECKPOINT, 7), (TEST, 7)]


def test_a_run_stopped_early_checkpoints_its_last_step_once():
    cfg = tiny_cfg(steps=7, eval_interval=3, checkpoint_interval=2)
    assert _walk(Schedule(cfg, until=3))[-2:] == [(VALIDATE, 3), (CHECKPOINT, 3)]
    assert _walk(Schedule(cfg, until=4))[-2:] == [(TRAIN, 3), (CHECKPOINT, 4)]  # the schedule's own, not twice
    assert _walk(Schedule(cfg, start=4, until=4)) == [(CHECKPOINT, 4)]  # nothing trained: saved again
    assert Schedule.on_stop(5, 4) == [Event(CHECKPOINT, 5)] and Schedule.on_stop(4, 4) == []


def test_log_points_and_learning_rates():
    cfg = tiny_cfg(steps=7, log_interval=3, lr=0.1, final_lr=0.001)
    train = [e for e in Schedule(cfg).events() if e.kind == TRAIN]
    assert [e.step + 1 for e in train if e.log] == [3, 6, 7]  # every interval and the last step run
    assert [e.step + 1 for e in Schedule(cfg, until=5).training() if e.log] == [3, 5]
    assert [e.lr for e in train] == [0.1 * cosine_factor(t, 7, 0.01) for t in range(7)]


def test_every_runners_optimizer_uses_the_schedules_rate_bit_for_bit_also_after_a_resume():
    """What the pipeline's coordinator logs (Schedule.lr) is the rate the optimizer steps with, exactly."""
    from sedona_runtime.training.block import Block, BlockRunner

    cfg = tiny_cfg(steps=9, lr=0.07, final_lr=0.0003)
    schedule = Schedule(cfg)

    def runner() -> BlockRunner:
        torch.manual_seed(0)
        block = Block(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)), LinearHead(2, 3), 0, 1)
        return BlockRunner(block, cfg, torch.device("cpu"))

    x, y = torch.randn(4, 1, 5, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    r = runner()
    for t in range(5):
        assert r.lr == schedule.lr(t)  # exact: the same float product LambdaLR computes
        r.train_step(x, y)
    resumed = runner()
    resumed.load_state_dict(r.state_dict())
    for t in range(5, 9):
        assert resumed.lr == schedule.lr(t)
        resumed.train_step(x, y)
